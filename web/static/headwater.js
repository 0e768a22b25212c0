// Keeps a running execution's page live: polls the JSON API for its state and for new
// log lines (after the last id shown), and swaps in fresh task runs when they change.
// The page works without this script; nothing here is needed to read or act.
(function () {
  "use strict";
  var POLL_MS = 1500;
  var TERMINAL = ["SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED", "SKIPPED"];

  function start() {
    var lines = document.getElementById("log-lines");
    if (lines) lines.scrollTop = lines.scrollHeight; // the newest lines first in view
    var head = document.getElementById("execution");
    if (!head || head.dataset.live !== "yes") return;
    var id = head.dataset.execution;
    var log = document.getElementById("log-lines");
    var follow = log && log.dataset.follow === "yes";
    var signature = null;
    var stopped = false;

    function getJson(url) {
      return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); });
    }

    function taskIds() {
      var found = {};
      document.querySelectorAll("tr[data-run]").forEach(function (row) {
        found[row.dataset.run] = row.dataset.task;
      });
      return found;
    }

    function appendLogs(lines) {
      if (!lines.length) return;
      var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
      var empty = document.getElementById("no-logs");
      if (empty) empty.remove();
      var tasks = taskIds();
      lines.forEach(function (line) {
        var div = document.createElement("div");
        div.className = "line lv-" + line.level;
        var time = document.createElement("time");
        time.textContent = String(line.timestamp).slice(11, 19);
        time.title = line.timestamp;
        div.appendChild(time);
        [["lv", line.level], ["tk", tasks[line.taskRunId] || ""], ["msg", line.message]].forEach(function (part) {
          var span = document.createElement("span");
          span.className = part[0];
          span.textContent = part[1];
          div.appendChild(span);
        });
        log.appendChild(div);
      });
      log.dataset.after = lines[lines.length - 1].id;
      if (atBottom) log.scrollTop = log.scrollHeight;
    }

    function pollLogs() {
      if (!follow) return Promise.resolve();
      var url = "/api/v1/logs/" + encodeURIComponent(id) + "?limit=1000&after=" + log.dataset.after;
      if (log.dataset.level) url += "&minLevel=" + encodeURIComponent(log.dataset.level);
      return getJson(url).then(function (lines) {
        appendLogs(lines);
        if (lines.length === 1000) return pollLogs();
      });
    }

    function refreshSections() {
      var here = "/executions/" + encodeURIComponent(id) + location.search;
      return fetch(here, { credentials: "same-origin" })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html");
          ["execution", "tasks", "io"].forEach(function (name) {
            var now = document.getElementById(name), next = fresh.getElementById(name);
            if (now && next) now.replaceWith(next);
          });
        });
    }

    function tick() {
      if (stopped) return;
      getJson("/api/v1/executions/" + encodeURIComponent(id))
        .then(function (execution) {
          var state = execution.state.current;
          var runs = (execution.taskRunList || []).map(function (r) {
            return r.id + ":" + r.state.current + ":" + (r.attempts || []).length;
          }).join(",");
          var next = state + "|" + runs;
          // The first answer is compared with the state the page was drawn with, so a
          // page drawn as CREATED does not keep saying so once the execution runs.
          var changed = signature === null ? state !== head.dataset.state : next !== signature;
          signature = next;
          return pollLogs().then(function () {
            if (changed) return refreshSections();
          }).then(function () {
            if (TERMINAL.indexOf(state) >= 0) {
              stopped = true;
              var note = document.getElementById("follow");
              if (note) note.textContent = "";
              return refreshSections();
            }
          });
        })
        .catch(function () { stopped = true; })
        .then(function () { if (!stopped) setTimeout(tick, POLL_MS); });
    }

    setTimeout(tick, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
