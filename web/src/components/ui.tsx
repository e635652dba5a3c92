/** Small shared pieces: section cards, status banners, the 8px progress bar. */
import type { ReactNode } from "react";
import { AlertIcon, CheckIcon } from "./icons";

export function Section({
  title,
  description,
  children,
  actions,
  id,
}: {
  title: string;
  description?: ReactNode;
  children: ReactNode;
  actions?: ReactNode;
  id?: string;
}) {
  const headingId = id ? `${id}-title` : undefined;
  return (
    <section className="card" aria-labelledby={headingId}>
      <div className="mb-4 flex flex-wrap items-start justify-between gap-2">
        <div>
          <h2 id={headingId} className="font-semibold text-mono-900 dark:text-mono-100">
            {title}
          </h2>
          {description ? <p className="muted mt-1 text-sm">{description}</p> : null}
        </div>
        {actions}
      </div>
      {children}
    </section>
  );
}

export function Banner({
  kind,
  title,
  children,
}: {
  kind: "success" | "error";
  title: string;
  children?: ReactNode;
}) {
  return (
    <div
      role={kind === "error" ? "alert" : "status"}
      className="flex items-start gap-3 rounded-lg border border-mono-300 bg-mono-100 p-4 dark:border-mono-700 dark:bg-mono-850"
    >
      {kind === "error" ? (
        <AlertIcon className="mt-0.5 h-5 w-5 shrink-0 text-mono-700 dark:text-mono-300" />
      ) : (
        <CheckIcon className="mt-0.5 h-5 w-5 shrink-0 text-mono-900 dark:text-mono-100" />
      )}
      <div className="min-w-0">
        <p className="font-medium text-mono-900 dark:text-mono-100">{title}</p>
        {children ? <div className="text-sm break-words text-mono-700 dark:text-mono-300">{children}</div> : null}
      </div>
    </div>
  );
}

/** A form's outcome: a title, and the lines of detail (e.g. one per field refused). */
export type Notice = { kind: "success" | "error"; title: string; lines?: string[] } | null;

export function NoticeBanner({ notice }: { notice: Notice }) {
  if (!notice) return null;
  return (
    <Banner kind={notice.kind} title={notice.title}>
      {notice.lines?.length ? (
        <ul className="list-disc pl-5">
          {notice.lines.map((line) => (
            <li key={line}>{line}</li>
          ))}
        </ul>
      ) : null}
    </Banner>
  );
}

/** What failed to load, with a Retry button. */
export function LoadErrorBanner({ title, error, onRetry }: { title: string; error: string | null; onRetry: () => void }) {
  if (!error) return null;
  return (
    <Banner kind="error" title={title}>
      <p>{error}</p>
      <button type="button" className="btn-secondary mt-2" onClick={onRetry}>
        Retry
      </button>
    </Banner>
  );
}

/** The seed's 8px bar: `share` of the whole (0..1), monochrome. */
export function ProgressBar({ share, label }: { share: number; label: string }) {
  const percent = Math.max(0, Math.min(100, share * 100));
  return (
    <div
      className="mt-2 h-2 overflow-hidden rounded-full bg-mono-150 dark:bg-mono-800"
      role="meter"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={Math.round(percent)}
      aria-valuetext={`${percent.toFixed(1)}%`}
    >
      <div className="h-full rounded-full bg-mono-900 dark:bg-mono-100" style={{ width: `${percent}%` }} />
    </div>
  );
}
