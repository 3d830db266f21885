"""The admin import flow in a real browser, on real processes (CONTRACT §4, the admin part).

Headless Chromium logs in through the admin, uploads a CSV and watches the run card: the bar
and the counters move batch by batch without a reload, the row errors appear, and "Retry
failed rows" finishes the run once the missing products exist. gunicorn, the outbox relay
and a Celery worker run as their own processes on the test database and share a media root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User

from catalog.models import Product
from imports.models import ImportRun

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ROWS = 4000
UNKNOWN_EVERY = 50  # every 50th row has a sku no product has, and no name: a row error
# Small batches and a run card that polls ten times a second: many steps, and the card sees
# the bar between 0 and 100 even when the whole file takes a second.
BATCH_SIZE = 50
POLL_MS = 100
PASSWORD = "a-long-enough-password"
DEADLINE_MS = 240_000  # two shared cores: generous

# Records every percent the bar shows, so the test can tell it moved in steps.
WATCH_BAR = """
() => {
  window.__seenPercents = [];
  const bar = document.querySelector('.import-progress');
  const record = () => window.__seenPercents.push(Number(bar.getAttribute('aria-valuenow')));
  record();
  new MutationObserver(record).observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']});
}
"""


def catalog_csv() -> tuple[bytes, list[str]]:
    # `colour` is not a column the import knows: ignored, with a warning on the card.
    lines = ["sku,name,price,currency,quantity,warehouse,updated_at,colour"]
    missing = []
    for i in range(1, ROWS + 1):
        if i % UNKNOWN_EVERY == 0:
            sku = f"LATE-{i:05d}"
            missing.append(sku)
            lines.append(f"{sku},,4.50,EUR,3,main,2026-01-01T00:00:00Z,red")
        else:
            lines.append(f"SKU-{i:05d},Product {i},9.99,EUR,7,main,2026-01-01T00:00:00Z,blue")
    return ("\n".join(lines) + "\n").encode(), missing


@pytest.fixture
def platform(
    start_web: Any,
    start_relay: Any,
    start_worker: Any,
    static_root: Path,
    tmp_path: Path,
) -> str:
    env = {
        "MEDIA_ROOT": str(tmp_path / "media"),
        "STATIC_ROOT": str(static_root),
        "IMPORT_BATCH_SIZE": str(BATCH_SIZE),
        "IMPORT_RUN_CARD_POLL_MS": str(POLL_MS),
    }
    start_worker(queues="default,low", **env)
    start_relay(**env)
    web = start_web(**env)
    User.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    return web.url


def test_upload_watch_progress_and_retry_failed_rows(
    platform: str, chromium: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base = platform
    content, missing = catalog_csv()
    csv_path = tmp_path / "spring-catalog.csv"
    csv_path.write_bytes(content)
    assert requests.get(f"{base}/static/imports/admin/run_card.js", timeout=10).status_code == 200

    context = chromium.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    problems: list[str] = []
    # Failed loads are checked by status below (Chromium's own /favicon.ico probe aside).
    page.on(
        "console",
        lambda m: (
            m.type == "error"
            and not m.text.startswith("Failed to load resource")
            and problems.append(m.text)
        ),
    )
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "response",
        lambda r: (
            r.status >= 400
            and not r.url.endswith("/favicon.ico")
            and problems.append(f"{r.status} {r.url}")
        ),
    )

    # Given a member of staff logged in through the admin's own form
    page.goto(f"{base}/admin/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible()

    # When they upload a file through Import runs → Add
    page.get_by_role("link", name="Import runs").first.click()
    page.get_by_role("link", name="Add import run").click()
    expect(page.locator("h1")).to_have_text("Upload a catalog CSV")
    page.set_input_files("#id_file", str(csv_path))
    page.fill("#id_encoding", "klingon-8")
    page.get_by_role("button", name="Upload and import").click()
    expect(page.locator(".errorlist")).to_contain_text("klingon-8")  # refused, nothing stored
    assert not ImportRun.objects.exists()
    page.set_input_files("#id_file", str(csv_path))
    page.fill("#id_encoding", "")
    page.get_by_role("button", name="Upload and import").click()

    # Then they land on the run card, which fills in without a reload
    page.wait_for_url("**/admin/imports/importrun/*/change/")
    run = ImportRun.objects.get()
    assert page.url.endswith(f"/admin/imports/importrun/{run.pk}/change/")
    page.evaluate("window.__sameCard = 'the page the upload landed on'")
    page.evaluate(WATCH_BAR)

    status = page.locator('.import-run-card [data-field="status"]')
    percent = page.locator('.import-progress [data-display="percent"]')
    failed = page.locator('.import-counters [data-field="failed_rows"]')
    expect(percent).to_have_text("100 %", timeout=DEADLINE_MS)
    expect(status).to_have_text("Completed with errors", timeout=DEADLINE_MS)
    assert page.evaluate("window.__sameCard") == "the page the upload landed on"
    seen = page.evaluate("window.__seenPercents")
    assert any(0 < p < 100 for p in seen), f"the bar never showed a step between: {seen}"
    assert seen == sorted(seen), f"the bar went backwards: {seen}"
    expect(failed).to_have_text(str(len(missing)))
    expect(page.locator('.import-counters [data-field="total_rows"]')).to_have_text(str(ROWS))
    batches = ROWS // BATCH_SIZE
    expect(page.locator('.import-counters [data-display="batches"]')).to_have_text(
        f"{batches} / {batches}"
    )
    expect(page.locator('.import-run-card [data-display="eta"]')).to_have_text("—")
    expect(page.locator('[data-section="warnings"]')).to_contain_text("colour")

    # The first row errors are inline, the full report downloads
    errors = page.locator('tbody[data-list="errors"] tr')
    expect(errors).to_have_count(20)
    expect(errors.first).to_contain_text(missing[0])
    expect(errors.first).to_contain_text("unknown_sku")
    page.screenshot(path=str(tmp_path / "run-card-with-errors.png"), full_page=True)
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download error report").click()
    report = Path(download_info.value.path()).read_text().splitlines()
    assert report[0] == "line,sku,column,code,message"
    assert [line.split(",")[1] for line in report[1:]] == missing

    # When the missing products exist and they retry the failed rows
    Product.objects.bulk_create(Product(sku=sku, name=f"Late {sku}") for sku in missing)
    expect(page.locator('[data-action="cancel"]')).to_be_hidden()
    page.get_by_role("button", name="Retry failed rows").click()
    page.wait_for_load_state()
    expect(page.locator(".messagelist")).to_contain_text("queued again")
    page.evaluate("window.__sameCard = 'after retry'")

    # Then the card reaches "Completed" with nothing failed, again without a reload
    expect(status).to_have_text("Completed", timeout=DEADLINE_MS)
    expect(failed).to_have_text("0")
    expect(page.locator('[data-section="errors"]')).to_be_hidden()
    expect(page.locator('[data-action="retry"]')).to_be_hidden()
    assert page.evaluate("window.__sameCard") == "after retry"
    expect(page.locator(".import-actions")).to_be_hidden()  # nothing left to do
    page.screenshot(path=str(tmp_path / "run-card-completed.png"), full_page=True)

    # The list of runs shows it too
    page.get_by_role("link", name="Import runs").first.click()
    row = page.locator("#result_list tbody tr").first
    expect(row.locator(".import-status")).to_have_text("Completed")
    expect(row.locator(".import-percent")).to_have_text("100 %")
    page.screenshot(path=str(tmp_path / "changelist.png"), full_page=True)

    run.refresh_from_db()
    assert (run.status, run.processed_rows, run.succeeded_rows, run.failed_rows) == (
        ImportRun.Status.COMPLETED,
        ROWS,
        ROWS,
        0,
    )
    assert Product.objects.count() == ROWS
    assert problems == [], problems
    context.close()
