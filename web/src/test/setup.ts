import "@testing-library/jest-dom/vitest";
import { cleanup, configure } from "@testing-library/react";
import { afterEach, vi } from "vitest";
import { setAuthorization } from "../api";

// findBy*/waitFor give up after 5 s instead of 1 s: on a busy machine (the Python suite beside
// this one) a page can take over a second to settle; a slower pass is still a pass.
configure({ asyncUtilTimeout: 5000 });

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  window.localStorage.clear();
  window.sessionStorage.clear();
  setAuthorization(null, null);
  document.documentElement.classList.remove("dark");
  window.history.replaceState(null, "", "/");
});

// jsdom has no matchMedia: the system preference is "light" unless a test says otherwise.
if (!window.matchMedia) {
  Object.defineProperty(window, "matchMedia", {
    writable: true,
    value: (query: string) => ({
      matches: false,
      media: query,
      onchange: null,
      addEventListener: () => {},
      removeEventListener: () => {},
      addListener: () => {},
      removeListener: () => {},
      dispatchEvent: () => false,
    }),
  });
}
