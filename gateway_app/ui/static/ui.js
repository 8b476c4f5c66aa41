// The dashboard's only script: shows each UTC time in the viewer's local time too.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
  });
  document.querySelectorAll("time[datetime]").forEach(function (node) {
    var moment = new Date(node.getAttribute("datetime"));
    if (isNaN(moment.getTime())) { return; }
    var local = document.createElement("span");
    local.className = "local";
    local.textContent = " (" + format.format(moment) + ")";
    node.title = format.format(moment);
    node.after(local);
  });
});
