// loaxa console: a little script where it helps, none where it does not.
// Every page works without it except the microphone recorder.
(function () {
  "use strict";

  // Parts of a page that refresh themselves: data-poll names the URL of an
  // HTML fragment rendered by the server, data-interval its period in s.
  document.querySelectorAll("[data-poll]").forEach(function (el) {
    var url = el.getAttribute("data-poll");
    var every = (parseInt(el.getAttribute("data-interval"), 10) || 30) * 1000;
    var tick = function () {
      if (document.hidden) { return; }
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) { if (r.status === 401) { location.reload(); } return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) { el.innerHTML = html; } })
        .catch(function () { /* offline for a moment: try again next tick */ });
    };
    setInterval(tick, every);
  });

  // Uploads with a progress bar: the form is sent with XHR to the same
  // console endpoint, which streams it on to the API.
  document.querySelectorAll("form[data-upload]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var box = form.querySelector("[data-progress]");
      var bar = box && box.querySelector("progress");
      var text = form.querySelector("[data-progress-text]");
      var errBox = form.querySelector("[data-upload-error]");
      var button = form.querySelector("button[type=submit]");
      form.querySelectorAll(".field-error").forEach(function (e) { e.hidden = true; e.textContent = ""; });
      errBox.hidden = true;
      if (box) { box.hidden = false; }
      button.disabled = true;
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable && bar) {
          var pct = Math.round(100 * e.loaded / e.total);
          bar.value = pct;
          text.textContent = pct + "%";
        }
      });
      xhr.addEventListener("load", function () {
        button.disabled = false;
        var body = {};
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = {}; }
        if (xhr.status < 300 && body.redirect) { location.assign(body.redirect); return; }
        var err = body.error || { message: xhr.statusText };
        var slot = err.field && document.getElementById("err-" + err.field);
        if (slot) { slot.textContent = err.message; slot.hidden = false; }
        else { errBox.textContent = err.message; errBox.hidden = false; }
        if (box) { box.hidden = true; }
      });
      xhr.addEventListener("error", function () {
        button.disabled = false;
        errBox.textContent = xhr.statusText || "network error";
        errBox.hidden = false;
      });
      xhr.send(new FormData(form));
    });
  });

  // Recording with the microphone: MediaRecorder with Opus, in WebM or Ogg
  // as the browser can; the recording becomes the form's audio file, so
  // that it is uploaded like any other.
  var types = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus"];
  document.querySelectorAll("[data-recorder]").forEach(function (box) {
    var form = box.closest("form");
    var input = form && form.querySelector("input[type=file][name=audio]");
    var start = box.querySelector("[data-rec-start]");
    var stop = box.querySelector("[data-rec-stop]");
    var status = box.querySelector("[data-rec-status]");
    var preview = box.querySelector("[data-rec-preview]");
    if (!input || !window.MediaRecorder || !navigator.mediaDevices || typeof DataTransfer === "undefined") { return; }
    var type = types.filter(function (t) { return MediaRecorder.isTypeSupported(t); })[0];
    box.hidden = false;
    if (!type) { status.textContent = status.getAttribute("data-msg-unsupported"); start.disabled = true; return; }
    var rec = null, chunks = [];
    start.addEventListener("click", function () {
      navigator.mediaDevices.getUserMedia({ audio: true }).then(function (stream) {
        chunks = [];
        rec = new MediaRecorder(stream, { mimeType: type });
        rec.addEventListener("dataavailable", function (e) { if (e.data.size > 0) { chunks.push(e.data); } });
        rec.addEventListener("stop", function () {
          stream.getTracks().forEach(function (t) { t.stop(); });
          var base = type.split(";")[0];
          var ext = base === "audio/ogg" ? "ogg" : "webm";
          var blob = new Blob(chunks, { type: base });
          var file = new File([blob], "recording." + ext, { type: base });
          var dt = new DataTransfer();
          dt.items.add(file);
          input.files = dt.files;
          preview.src = URL.createObjectURL(blob);
          preview.hidden = false;
          status.textContent = status.getAttribute("data-msg-done");
          start.disabled = false; stop.disabled = true;
        });
        rec.start(1000);
        status.textContent = status.getAttribute("data-msg-recording");
        start.disabled = true; stop.disabled = false;
      }).catch(function () { status.textContent = status.getAttribute("data-msg-denied"); });
    });
    stop.addEventListener("click", function () { if (rec && rec.state !== "inactive") { rec.stop(); } });
  });
})();
