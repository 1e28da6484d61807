// Live updates over server-sent events: the assist dialog as soon as it is due, and the
// dashboard's numbers as messages get their outcome. Without JavaScript the console still
// works: the dialog is rendered into the page when a page is loaded.
"use strict";
(function () {
  const body = document.body;
  if (!body.dataset.user) return;
  let crashState = body.dataset.crashState;
  let outcomes = null;

  function dialog() { return document.getElementById("assist"); }

  function showDialog() {
    const shown = dialog();
    if (shown && !shown.open) shown.showModal();
  }

  async function fetchFragment(url) {
    const answer = await fetch(url, { credentials: "same-origin" });
    // A redirect means the session ended: the next page load shows the login.
    if (answer.status !== 200 || answer.redirected) return null;
    return answer.text();
  }

  async function askForDialog() {
    if (dialog() && dialog().open) return;
    const html = await fetchFragment("/assist/dialog?next=" + encodeURIComponent(location.pathname));
    if (html === null) return;
    document.getElementById("assist-slot").innerHTML = html;
    showDialog();
  }

  async function refreshLive() {
    const live = document.getElementById("live");
    if (!live) return;
    const html = await fetchFragment("/dashboard/live");
    if (html !== null) live.innerHTML = html;
  }

  showDialog();
  const events = new EventSource("/events");
  events.addEventListener("state", function (event) {
    const state = JSON.parse(event.data);
    if (state.crashdumps !== crashState) {
      crashState = state.crashdumps;
      askForDialog();
    }
    if (outcomes !== null && state.outcomes !== outcomes) refreshLive();
    outcomes = state.outcomes;
  });
  setInterval(refreshLive, 10000);
})();
