/**
 * The budget form's alert e-mail: the address this user's own alerts go to (docs/budgets.md,
 * "E-mail to the user"). SNS e-mails it a confirmation link first, and nothing is delivered until
 * it is followed: the field says so, and shows whether the stored address has confirmed.
 */
import type { AlertEmail } from "../api";

const STATUS_TEXT: Record<AlertEmail["status"], string> = {
  pending_confirmation: "Waiting for confirmation: follow the link in the e-mail from AWS Notifications",
  confirmed: "Confirmed",
  unknown: "Confirmation state unknown",
};

export default function AlertEmailField({
  id,
  stored,
  available,
  value,
  remove,
  error,
  onChange,
  onToggleRemove,
}: {
  id: string;
  stored: AlertEmail | null;
  available: boolean;
  value: string;
  remove: boolean;
  error?: string;
  onChange: (value: string) => void;
  onToggleRemove: () => void;
}) {
  if (!available) return null;
  return (
    <div data-testid="alert-email">
      <div className="mb-1 flex flex-wrap items-center gap-2">
        <label htmlFor={id} className="label mb-0!">
          Alert e-mail
        </label>
        {stored && !remove ? (
          <span className="muted text-xs" data-testid="alert-email-status" data-status={stored.status}>
            {stored.address} · {STATUS_TEXT[stored.status]}
          </span>
        ) : null}
        {stored ? (
          <button type="button" className="btn-secondary ml-auto !py-1" aria-pressed={remove} onClick={onToggleRemove}>
            Remove address
          </button>
        ) : null}
      </div>
      <input
        id={id}
        type="email"
        name="alert-email"
        autoComplete="email"
        className="input"
        placeholder={stored ? "type another address to replace it" : "ops@example.com"}
        value={value}
        onChange={(e) => onChange(e.target.value)}
        aria-invalid={error ? true : undefined}
        aria-describedby={`${id}-help`}
      />
      <p id={`${id}-help`} className="muted mt-1 text-xs">
        Optional. Your own alerts only (each budget's and each tag budget's). AWS first e-mails this address a
        confirmation link: nothing is delivered until it is followed
        {remove ? "; the stored address is removed when you save" : ""}.
      </p>
      {error ? <p className="mt-1 text-xs text-mono-700 dark:text-mono-300">{error}</p> : null}
    </div>
  );
}
