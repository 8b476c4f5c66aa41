// The dashboard's only script: shows each UTC time in the viewer's local time too (beside it when the
// viewer is not on UTC, and as its tooltip always).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", timeZoneName: "short"
  });
  document.querySelectorAll("time[datetime]").forEach(function (node) {
    var moment = new Date(node.getAttribute("datetime"));
    if (isNaN(moment.getTime())) { return; }
    node.title = "Your time: " + format.format(moment);
    if (moment.getTimezoneOffset() === 0) { return; }
    var local = document.createElement("span");
    local.className = "local";
    local.textContent = " (" + format.format(moment) + ")";
    node.after(local);
  });
});
