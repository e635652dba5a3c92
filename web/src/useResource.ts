import { useEffect, useState } from "react";
import { ApiError } from "./api";

/** One independent request's state: a failing insight shows its own inline error, nothing else. */
export type Resource<T> = { state: "loading" } | { state: "ok"; value: T } | { state: "error"; message: string };

/**
 * Runs `fetcher` whenever it changes (memoize it with useCallback) and on `retry`; `null` waits.
 * While a new request runs, the last good value stays on screen (no flicker on period changes).
 */
export function useResource<T>(fetcher: (() => Promise<T>) | null): { resource: Resource<T>; retry: () => void } {
  const [resource, setResource] = useState<Resource<T>>({ state: "loading" });
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    if (!fetcher) return;
    let live = true;
    setResource((current) => (current.state === "ok" ? current : { state: "loading" }));
    fetcher().then(
      (value) => {
        if (live) setResource({ state: "ok", value });
      },
      (err: unknown) => {
        if (live) setResource({ state: "error", message: err instanceof ApiError || err instanceof Error ? err.message : String(err) });
      },
    );
    return () => {
      live = false;
    };
  }, [fetcher, attempt]);

  return { resource, retry: () => setAttempt((n) => n + 1) };
}
