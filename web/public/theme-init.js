// Runs before the first paint so a dark-mode user never sees a white flash. Mirrors src/theme.ts:
// an explicit choice ("light" or "dark") in localStorage wins, otherwise the system preference.
(function () {
  var choice = null;
  try {
    choice = window.localStorage.getItem("llmtally.theme");
  } catch (e) {
    choice = null;
  }
  var dark = choice === "dark" || (choice !== "light" && window.matchMedia("(prefers-color-scheme: dark)").matches);
  document.documentElement.classList.toggle("dark", dark);
})();
