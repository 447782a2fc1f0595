// The Image builds pages' only script: the action forms post JSON to the plugin's API (the
// browser sends Airflow's session cookie), and links to Airflow's own pages open in Airflow's
// window instead of inside this frame.
(function () {
  "use strict";

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
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var data = new FormData(form);
      var body = { reason: String(data.get("reason") || "").trim() };
      body[form.dataset.field] = Number(data.get("milestone"));
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
              result.textContent = form.dataset.verb + " refused (HTTP " + resp.status + "): " + detail(answer);
              result.className = "result error";
              button.disabled = false;
              return;
            }
            var done = form.dataset.verb + " recorded" + (answer.dag_run_id ? "; run " + answer.dag_run_id + " triggered" : "") + ".";
            window.sessionStorage.setItem("imagebuild-flash", done);
            window.location.reload();
          });
        })
        .catch(function (err) {
          result.textContent = form.dataset.verb + " failed: " + err;
          result.className = "result error";
          button.disabled = false;
        });
    });
  });
})();
