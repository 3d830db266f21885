#!/bin/bash
# Move the storm's processes (web gunicorn with --threads 2, celery high worker, relay) into a low-share cpu cgroup.
CG=/sys/fs/cgroup/cpu/spstorm
mkdir -p $CG
echo ${SHARES:-128} > $CG/cpu.shares
end=$(( $(date +%s) + $1 ))
while [ $(date +%s) -lt $end ]; do
  for pid in $(pgrep -f "gunicorn syncplatform.wsgi.*--threads 2") $(pgrep -f "celery.*-Q high") $(pgrep -f "run_outbox_relay"); do
    echo $pid > $CG/cgroup.procs 2>/dev/null
    for t in /proc/$pid/task/*; do echo ${t##*/} > $CG/tasks 2>/dev/null; done
  done
  sleep 1
done
