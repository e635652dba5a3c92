import { useCallback, useEffect, useState } from "react";

/**
 * Two pages do not need a router library: the path is the state, links push history entries, and
 * back/forward work. The local stack (and the CDK hosting) answer index.html for these paths.
 */
export const ROUTES = {
  configuration: "/settings/llm",
  usage: "/settings/usage",
} as const;
export type Route = keyof typeof ROUTES;

export function routeOf(path: string): Route {
  const clean = path.replace(/\/+$/, "");
  if (clean === ROUTES.configuration) return "configuration";
  return "usage";
}

export function useRoute(): { route: Route; navigate: (route: Route) => void } {
  const [route, setRoute] = useState<Route>(() => routeOf(window.location.pathname));

  useEffect(() => {
    const onPop = () => setRoute(routeOf(window.location.pathname));
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);

  const navigate = useCallback((next: Route) => {
    if (window.location.pathname !== ROUTES[next]) window.history.pushState(null, "", ROUTES[next]);
    setRoute(next);
  }, []);

  return { route, navigate };
}
