// Preferences kept in this browser (localStorage): stall threshold, refresh interval, theme.

const KEY = "culm.settings";
const DEFAULTS = { stallSeconds: 60, pollSeconds: 2, theme: "auto" };

export function settings() {
  try {
    return { ...DEFAULTS, ...JSON.parse(localStorage.getItem(KEY) || "{}") };
  } catch {
    return { ...DEFAULTS };
  }
}

export function save(changes) {
  const next = { ...settings(), ...changes };
  localStorage.setItem(KEY, JSON.stringify(next));
  applyTheme(next.theme);
  return next;
}

export function applyTheme(theme = settings().theme) {
  const root = document.documentElement;
  if (theme === "light" || theme === "dark") root.dataset.theme = theme;
  else delete root.dataset.theme;
}
