/* The workflow report's charts (templates/admin/workflows/workflow/report.html).
   The numbers come from the page's json_script block; the tables already show them
   all, so without JavaScript (or without Chart.js) the chart boxes simply stay
   hidden. Colours follow the admin's CSS variables, so dark mode works too. */
(function () {
  "use strict";

  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name);
    return value.trim() || fallback;
  }

  function show(name) {
    var box = document.querySelector('.nudge-report [data-chart="' + name + '"]');
    if (!box) return null;
    box.hidden = false;
    return box.querySelector("canvas");
  }

  function axes(color, grid, shortDates) {
    var ticks = { color: color };
    if (shortDates) {
      // "2026-11-25" -> "11-25": the year is in the table, and 30 of them crowd
      ticks.callback = function (value) { return this.getLabelForValue(value).slice(5); };
    }
    return {
      x: { ticks: ticks, grid: { color: grid } },
      y: { beginAtZero: true, ticks: { color: color, precision: 0 }, grid: { color: grid } }
    };
  }

  function draw() {
    var source = document.getElementById("workflow-report-data");
    if (!source || typeof window.Chart === "undefined") return;
    var data = JSON.parse(source.textContent);
    var text = cssVar("--body-quiet-color", "#666");
    var grid = cssVar("--hairline-color", "#e8e8e8");
    var primary = cssVar("--secondary", "#417690");
    var success = "#3a9a5b";
    var common = { responsive: true, maintainAspectRatio: false, animation: false };

    var funnel = show("funnel");
    if (funnel) {
      new window.Chart(funnel, {
        type: "bar",
        data: {
          labels: data.funnel.labels,
          datasets: [{ label: "Reached", data: data.funnel.counts,
                       backgroundColor: primary }]
        },
        options: Object.assign({}, common, {
          plugins: { legend: { display: false } },
          scales: axes(text, grid)
        })
      });
    }

    var series = show("series");
    if (series) {
      new window.Chart(series, {
        type: "line",
        data: {
          labels: data.series.labels,
          datasets: [
            { label: "Entered", data: data.series.entered, borderColor: primary,
              backgroundColor: primary, tension: 0.2 },
            { label: "Converted", data: data.series.converted, borderColor: success,
              backgroundColor: success, tension: 0.2 }
          ]
        },
        options: Object.assign({}, common, {
          interaction: { mode: "index", intersect: false },
          plugins: { legend: { labels: { color: text } } },
          scales: axes(text, grid, true)
        })
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
