/* Live preview of an email template in admin: posts the form's fields to the preview
   endpoint and shows the result in sandboxed iframes (no scripts can run there). */
(function () {
  "use strict";
  function $(id) { return document.getElementById(id); }
  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }
  function init() {
    var panel = $("nudge-preview");
    if (!panel) return;
    var url = panel.dataset.previewUrl;
    var fields = ["subject", "preheader", "html_body", "text_body", "layout"];
    var timer = null;
    function refresh() {
      var body = new FormData();
      fields.forEach(function (name) {
        var el = $("id_" + name);
        if (el) body.append(name, el.value);
      });
      body.append("contact", $("nudge-preview-contact").value);
      fetch(url, { method: "POST", body: body, headers: { "X-CSRFToken": csrfToken() },
                   credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (data) {
          $("nudge-preview-error").textContent = data.error || "";
          if (data.error) return;
          $("nudge-preview-subject").textContent = data.subject;
          $("nudge-preview-frame-desktop").srcdoc = data.html;
          $("nudge-preview-frame-mobile").srcdoc = data.html;
        })
        .catch(function (err) { $("nudge-preview-error").textContent = String(err); });
    }
    function later() { clearTimeout(timer); timer = setTimeout(refresh, 400); }
    fields.forEach(function (name) {
      var el = $("id_" + name);
      if (el) { el.addEventListener("input", later); el.addEventListener("change", later); }
    });
    $("nudge-preview-contact").addEventListener("change", refresh);
    [["desktop", "nudge-preview-frame-desktop"], ["mobile", "nudge-preview-frame-mobile"]]
      .forEach(function (pair) {
        $("nudge-preview-" + pair[0]).addEventListener("change", function (e) {
          $(pair[1]).classList.toggle("hidden", !e.target.checked);
        });
      });
    refresh();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
