import { useEffect, useState } from "react";
import { loadRuntimeConfig, setApiBaseUrl, setAuthorization, type RuntimeConfig } from "./api";
import { redirectToSignIn, signIn, signOut, storedSession } from "./auth";
import { AlertIcon, BarChartIcon, MoonIcon, SlidersIcon, SpinnerIcon, SunIcon } from "./components/icons";
import LLMConfiguration from "./pages/LLMConfiguration";
import LLMUsageAnalytics from "./pages/LLMUsageAnalytics";
import { ROUTES, useRoute, type Route } from "./router";
import { useTheme } from "./theme";

const NAV: { route: Route; label: string; icon: typeof SlidersIcon }[] = [
  { route: "configuration", label: "LLM Configuration", icon: SlidersIcon },
  { route: "usage", label: "Usage Analytics", icon: BarChartIcon },
];

const TITLES: Record<Route, string> = {
  configuration: "LLM Configuration · llmtally",
  usage: "Usage Analytics · llmtally",
};

export function Shell({ config }: { config: RuntimeConfig }) {
  const { route, navigate } = useRoute();
  const { theme, toggle } = useTheme();

  useEffect(() => {
    document.title = TITLES[route];
  }, [route]);

  return (
    <div className="min-h-screen">
      <a
        href="#main"
        className="sr-only focus:not-sr-only focus:absolute focus:left-2 focus:top-2 focus:z-50 focus:rounded-md focus:bg-mono-900 focus:px-3 focus:py-2 focus:text-mono-50"
      >
        Skip to content
      </a>
      <header className="border-b border-mono-200 bg-white dark:border-mono-800 dark:bg-mono-900">
        <div className="mx-auto flex max-w-7xl items-center justify-between gap-3 px-4 py-3 sm:px-6">
          <div className="flex min-w-0 items-center gap-2">
            <span
              aria-hidden="true"
              className="flex h-8 w-8 shrink-0 items-center justify-center rounded-md bg-mono-900 text-mono-50 dark:bg-mono-100 dark:text-mono-950"
            >
              <BarChartIcon className="h-4 w-4" />
            </span>
            <span className="truncate text-lg font-semibold tracking-tight text-mono-950 dark:text-mono-50">
              llmtally
            </span>
          </div>
          <div className="flex items-center gap-2">
            <span className="hidden text-sm text-mono-600 sm:inline dark:text-mono-400" title="Signed-in user">
              {config.userLabel ?? config.userId}
            </span>
            {config.auth ? (
              <button
                type="button"
                className="btn-secondary h-9"
                onClick={() => config.auth && signOut(config.auth)}
                data-testid="sign-out"
              >
                Sign out
              </button>
            ) : null}
            <button
              type="button"
              onClick={toggle}
              className="btn-secondary h-9 w-9 !p-0"
              aria-label={theme === "dark" ? "Switch to light mode" : "Switch to dark mode"}
              title={theme === "dark" ? "Switch to light mode" : "Switch to dark mode"}
              data-testid="theme-toggle"
            >
              {theme === "dark" ? <SunIcon className="h-4 w-4" /> : <MoonIcon className="h-4 w-4" />}
            </button>
          </div>
        </div>
      </header>
      <div className="mx-auto flex max-w-7xl flex-col gap-6 px-4 py-6 sm:px-6 lg:flex-row">
        <nav aria-label="Settings" className="lg:w-56 lg:shrink-0">
          <p className="mb-2 hidden px-3 text-xs font-semibold tracking-wide text-mono-500 uppercase lg:block dark:text-mono-400">
            Settings
          </p>
          <ul className="flex gap-2 overflow-x-auto lg:flex-col lg:gap-1">
            {NAV.map(({ route: target, label, icon: NavIcon }) => {
              const current = route === target;
              return (
                <li key={target} className="shrink-0">
                  <a
                    href={ROUTES[target]}
                    aria-current={current ? "page" : undefined}
                    onClick={(event) => {
                      if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
                      event.preventDefault();
                      navigate(target);
                    }}
                    className={`flex items-center gap-2 rounded-md px-3 py-2 text-sm font-medium whitespace-nowrap ${
                      current
                        ? "bg-mono-900 text-mono-50 dark:bg-mono-100 dark:text-mono-950"
                        : "text-mono-700 hover:bg-mono-150 dark:text-mono-300 dark:hover:bg-mono-850"
                    }`}
                  >
                    <NavIcon className="h-4 w-4" />
                    {label}
                  </a>
                </li>
              );
            })}
          </ul>
        </nav>
        <main id="main" tabIndex={-1} className="min-w-0 flex-1 focus:outline-none">
          {route === "configuration" ? (
            <LLMConfiguration userId={config.userId} />
          ) : (
            <LLMUsageAnalytics userId={config.userId} />
          )}
        </main>
      </div>
    </div>
  );
}

export default function App() {
  const [config, setConfig] = useState<RuntimeConfig | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    loadRuntimeConfig()
      .then(async (loaded) => {
        if (!live) return;
        setApiBaseUrl(loaded.apiBaseUrl);
        const auth = loaded.auth;
        if (!auth) {
          setConfig(loaded);
          return;
        }
        const session = await signIn(auth);
        if (!live || !session) return; // on the way to the sign-in page
        setAuthorization(
          () => storedSession()?.accessToken ?? null,
          () => void redirectToSignIn(auth),
        );
        setConfig({ ...loaded, userId: session.sub, userLabel: session.email ?? session.sub });
      })
      .catch((err: unknown) => live && setError(err instanceof Error ? err.message : String(err)));
    return () => {
      live = false;
    };
  }, []);

  if (error) {
    return (
      <div role="alert" className="mx-auto mt-16 max-w-md card flex items-start gap-3">
        <AlertIcon className="mt-0.5 h-5 w-5 shrink-0" />
        <div>
          <p className="font-medium">The dashboard could not start</p>
          <p className="muted text-sm">{error}</p>
        </div>
      </div>
    );
  }
  if (!config) {
    return (
      <div className="flex min-h-screen items-center justify-center" role="status" aria-live="polite">
        <SpinnerIcon className="h-6 w-6 text-mono-500" />
        <span className="sr-only">Loading…</span>
      </div>
    );
  }
  return <Shell config={config} />;
}
