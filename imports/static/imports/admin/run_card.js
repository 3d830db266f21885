// Import run card (imports/admin.py): refresh the counters in place, without a reload.
// Polls the run's progress document once per interval until the run is finished. The
// server formats everything it shows (doc.display), so this only copies values into the page.
"use strict";
(function () {
  const card = document.querySelector(".import-run-card[data-progress-url]");
  if (!card) {
    return;
  }
  const url = card.dataset.progressUrl;
  const interval = Number(card.dataset.pollMs) || 1000;

  function setText(selector, value) {
    card.querySelectorAll(selector).forEach(function (el) {
      el.textContent = value === null || value === undefined ? "" : String(value);
    });
  }

  function show(selector, visible) {
    card.querySelectorAll(selector).forEach(function (el) {
      el.hidden = !visible;
    });
  }

  function fillList(name, items, makeRow) {
    const list = card.querySelector('[data-list="' + name + '"]');
    if (list) {
      list.replaceChildren.apply(list, items.map(makeRow));
    }
  }

  function cells(tag, values) {
    const row = document.createElement(tag);
    values.forEach(function (value) {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.appendChild(cell);
    });
    return row;
  }

  function render(doc) {
    const status = card.querySelector('[data-field="status"]');
    if (status) {
      status.className = "import-status import-status--" + doc.status;
      status.dataset.status = doc.status;
      status.textContent = doc.display.status;
    }
    ["total_rows", "processed_rows", "succeeded_rows", "failed_rows", "skipped_rows", "error"]
      .forEach(function (field) { setText('[data-field="' + field + '"]', doc[field]); });
    Object.keys(doc.display).forEach(function (key) {
      setText('[data-display="' + key + '"]', doc.display[key]);
    });
    const bar = card.querySelector(".import-progress");
    if (bar) {
      bar.setAttribute("aria-valuenow", String(doc.percent));
      bar.querySelector(".import-progress__bar").style.width = doc.percent + "%";
    }
    fillList("warnings", doc.warnings, function (text) {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    });
    fillList("errors", doc.first_errors, function (e) {
      return cells("tr", [e.line, e.sku, e.column, e.code, e.message]);
    });
    show('[data-section="warnings"]', doc.warnings.length > 0);
    show('[data-section="error"]', Boolean(doc.error));
    show('[data-section="errors"]', doc.first_errors.length > 0);
    show('[data-action="retry"]', doc.can_retry);
    show('[data-action="cancel"]', doc.can_cancel);
    show('[data-action="report"]', doc.failed_rows > 0);
    card.dataset.finished = doc.finished ? "true" : "false";
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          const error = new Error("HTTP " + response.status);
          // Logged out, no permission, run deleted: asking again will not help.
          error.final = response.status >= 400 && response.status < 500;
          throw error;
        }
        return response.json();
      })
      .then(function (doc) {
        render(doc);
        card.classList.remove("import-run-card--stale");
        if (doc.finished) {
          show("[data-live]", false);
        } else {
          window.setTimeout(poll, interval);
        }
      })
      .catch(function (error) {
        // A restarting web process or a dropped connection: keep the last figures, try again.
        card.classList.add("import-run-card--stale");
        if (error.final) {
          show("[data-live]", false);
        } else {
          window.setTimeout(poll, interval);
        }
      });
  }

  if (card.dataset.finished !== "true") {
    show("[data-live]", true);
    window.setTimeout(poll, interval);
  }
})();
