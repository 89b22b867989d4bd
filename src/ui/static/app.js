// Dockyard web UI: progressive enhancement only. Every page works without this script.
// - Instant search: typing in #search fetches /-/search?q= (debounced) and swaps #results.
// - Copy buttons: button.copy copies its data-copy text and says "Copied".
(function () {
  "use strict";

  function instantSearch() {
    var input = document.getElementById("search");
    var form = document.getElementById("search-form");
    if (!input || !form || !window.fetch) return;
    var timer = null;
    var latest = 0;
    function run() {
      var q = input.value.trim();
      var seq = ++latest;
      fetch("/-/search?q=" + encodeURIComponent(q), {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
      })
        .then(function (resp) {
          return resp.ok ? resp.text() : null;
        })
        .then(function (html) {
          if (html === null || seq !== latest) return;
          var current = document.getElementById("results");
          if (!current) return;
          var holder = document.createElement("div");
          holder.innerHTML = html;
          var fresh = holder.querySelector("#results");
          if (fresh) current.replaceWith(fresh);
          var url = q ? "/?q=" + encodeURIComponent(q) : "/";
          if (window.history && history.replaceState) history.replaceState(null, "", url);
        })
        .catch(function () {
          /* the form still works: pressing Enter submits it */
        });
    }
    input.addEventListener("input", function () {
      if (timer) clearTimeout(timer);
      timer = setTimeout(run, 150);
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (timer) clearTimeout(timer);
      run();
    });
  }

  function selectText(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function copied(button) {
    button.textContent = "Copied";
    button.classList.add("copied");
    setTimeout(function () {
      button.textContent = "Copy";
      button.classList.remove("copied");
    }, 2000);
  }

  function fallbackCopy(button, text) {
    var code = button.parentNode && button.parentNode.querySelector("code");
    var ok = false;
    if (code) {
      selectText(code);
      try {
        ok = document.execCommand("copy");
      } catch (e) {
        ok = false;
      }
    }
    if (ok) {
      copied(button);
    } else {
      button.textContent = "Press Ctrl+C";
    }
  }

  function copyButtons() {
    document.addEventListener("click", function (event) {
      var button = event.target.closest ? event.target.closest("button.copy") : null;
      if (!button) return;
      var text = button.getAttribute("data-copy") || "";
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(
          function () {
            copied(button);
          },
          function () {
            fallbackCopy(button, text);
          }
        );
      } else {
        fallbackCopy(button, text);
      }
    });
  }

  document.documentElement.classList.add("js");
  instantSearch();
  copyButtons();
})();
