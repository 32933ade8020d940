// Sends the compose form with its attachments in the background, to show how far the
// upload is; without this script the form posts as any other.
(function () {
  var form = document.getElementById("compose");
  var bar = document.getElementById("progress");
  if (!form || !bar || !window.FormData) return;
  var label = document.getElementById("progress-label");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var button = form.querySelector("button[type=submit]");
    var request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.upload.addEventListener("progress", function (step) {
      if (!step.lengthComputable) return;
      bar.max = step.total;
      bar.value = step.loaded;
      label.textContent = Math.floor((100 * step.loaded) / step.total) + " %";
    });
    request.addEventListener("load", function () {
      if (request.status === 200 && request.responseURL && request.responseURL !== form.action) {
        window.location.assign(request.responseURL);
        return;
      }
      document.open();
      document.write(request.responseText);
      document.close();
    });
    request.addEventListener("error", function () {
      label.textContent = bar.getAttribute("data-failed");
      button.disabled = false;
    });
    bar.parentNode.hidden = false;
    button.disabled = true;
    request.send(new FormData(form));
  });
})();
