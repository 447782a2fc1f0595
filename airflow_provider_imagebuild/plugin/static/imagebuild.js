// The Image builds pages' only script: times in the time zone chosen in Airflow's UI, the action
// forms (JSON to the plugin's API, with Airflow's session cookie), a page that follows a running
// build, and links to Airflow's own pages opened in Airflow's window instead of inside this frame.
(function () {
  "use strict";

  // Airflow 3's UI keeps the time zone chosen in its user menu in localStorage under "timezone"
  // (JSON, as usehooks-ts writes it), defaulting to the browser's own zone. These pages share
  // Airflow's origin, so they read the same choice and show every time in it.
  function selectedZone() {
    var fallback = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    try {
      var stored = window.localStorage.getItem("timezone");
      var zone = stored ? JSON.parse(stored) : fallback;
      new Intl.DateTimeFormat("en-US", { timeZone: zone });  // throws for a zone the browser lacks
      return zone;
    } catch (e) {
      return fallback;
    }
  }

  function showTimes(zone) {
    var format = new Intl.DateTimeFormat("en-US", {
      timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
    });
    document.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) return;
      var p = {};
      format.formatToParts(when).forEach(function (part) { p[part.type] = part.value; });
      el.textContent = p.year + "-" + p.month + "-" + p.day + " " + p.hour + ":" + p.minute + ":" + p.second;
    });
    var label = document.getElementById("tz");
    if (label) label.textContent = (label.classList.contains("muted") ? "" : "· ") + "Times in " + zone;
  }
  showTimes(selectedZone());
  window.addEventListener("storage", function (ev) { if (ev.key === "timezone") showTimes(selectedZone()); });

  // Airflow shows these pages in a sandboxed frame of the same origin, which may not navigate
  // the top window; its router follows history changes, so push the path and tell it.
  document.addEventListener("click", function (ev) {
    var link = ev.target.closest ? ev.target.closest("a[data-airflow]") : null;
    if (!link || window.top === window || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
    try {
      var top = window.top;
      top.history.pushState(null, "", link.getAttribute("href"));
      top.dispatchEvent(new top.PopStateEvent("popstate", { state: null }));
      ev.preventDefault();
    } catch (e) {
      // not allowed: the link opens in the frame
    }
  });

  function detail(answer) {
    if (!answer || answer.detail === undefined) return "no answer";
    if (typeof answer.detail === "string") return answer.detail;
    return answer.detail.map(function (d) { return (d.loc || []).slice(1).join(".") + ": " + d.msg; }).join("; ");
  }

  var flash = window.sessionStorage.getItem("imagebuild-flash");
  var result = document.getElementById("action-result");
  if (flash && result) {
    result.textContent = flash;
    result.className = "result ok";
    window.sessionStorage.removeItem("imagebuild-flash");
  }

  document.querySelectorAll("form[data-action]").forEach(function (form) {
    // What the chosen milestone will do, under the form, as the person picks it.
    var select = form.querySelector("select[name=milestone]");
    var does = form.querySelector(".does");
    if (select && does) {
      select.addEventListener("change", function () {
        var option = select.options[select.selectedIndex];
        does.textContent = (option ? option.dataset.does || "" : "") + (form.dataset.suffix || "");
      });
    }
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var out = result || form.parentNode.querySelector(".result");
      var data = new FormData(form);
      var body = { reason: String(data.get("reason") || "").trim() };
      if (form.dataset.field) body[form.dataset.field] = Number(data.get("milestone"));  // abandon takes a reason only
      form.querySelectorAll("input[data-number]").forEach(function (input) { body[input.name] = Number(input.value); });
      var button = form.querySelector("button");
      button.disabled = true;
      fetch(form.dataset.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
      })
        .then(function (resp) {
          return resp.json().catch(function () { return {}; }).then(function (answer) {
            if (!resp.ok) {
              out.textContent = form.dataset.verb + " refused (HTTP " + resp.status + "): " + detail(answer);
              out.className = "result error";
              button.disabled = false;
              return;
            }
            var done = form.dataset.verb + " recorded" + (answer.dag_run_id ? "; run " + answer.dag_run_id + " triggered" : "") + ".";
            window.sessionStorage.setItem("imagebuild-flash", done);
            window.location.reload();
          });
        })
        .catch(function (err) {
          out.textContent = form.dataset.verb + " failed: " + err;
          out.className = "result error";
          button.disabled = false;
        });
    });
  });

  // The builds list, while a build on it runs: reloaded every 30 s (its ETAs and progress), for an
  // hour at most in a row, never while the filters are being changed.
  var list = document.getElementById("builds");
  if (list && list.dataset.follow === "1") {
    var rounds = Number(window.sessionStorage.getItem("imagebuild-list-rounds") || "0");
    if (rounds < 120) {
      window.setTimeout(function () {
        var filters = document.querySelector("form.filters");
        if (filters && filters.contains(document.activeElement)) return;
        window.sessionStorage.setItem("imagebuild-list-rounds", String(rounds + 1));
        window.location.reload();
      }, 30000);
    }
  } else if (list) {
    window.sessionStorage.removeItem("imagebuild-list-rounds");
  }

  // Follow a build that runs or waits for its next milestone: ask the API for its version every
  // few seconds (5 s, slowing to 30 s), reload when it changed, stop once it failed or was
  // delivered, and give up after two hours (a reload starts again). A reason being typed is
  // never thrown away: the page then only says that the build changed.
  var build = document.getElementById("build");
  if (build && build.dataset.activity && build.dataset.activity !== "still") {
    var delay = 5000, spent = 0, limit = 2 * 3600 * 1000;
    var typing = function () {
      return Array.prototype.some.call(document.querySelectorAll("input[name=reason]"), function (i) {
        return i.value.trim() !== "" || i === document.activeElement;
      });
    };
    var live = document.getElementById("live");
    var poll = function () {
      if (spent > limit) { if (live) live.textContent = "not following (reload to follow again)"; return; }
      if (document.hidden) { spent += delay; window.setTimeout(poll, delay); return; }
      fetch(build.dataset.poll, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (resp) { return resp.ok ? resp.json() : null; })
        .then(function (rec) {
          if (rec && String(rec.version) !== build.dataset.version) {
            if (!typing()) { window.location.reload(); return; }
            if (live) live.textContent = "the build changed: reload to see it";
            return;
          }
          spent += delay;
          delay = Math.min(delay * 1.5, 30000);
          window.setTimeout(poll, delay);
        })
        .catch(function () { spent += delay; window.setTimeout(poll, delay); });
    };
    window.setTimeout(poll, delay);
  }
})();
