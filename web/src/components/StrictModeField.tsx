/**
 * The budget forms' strict checkbox (the tenant budget and tag budgets, docs/budgets.md): strict
 * reserves each call's worst-case cost before it runs, which only enforces something with block or
 * switch, so it can be ticked only then (the API refuses strict with notify).
 */
import type { BudgetAction } from "../api";

/** Whether strict is on for `action`: never with notify, even if it was ticked before notify was chosen. */
export function strictWith(action: BudgetAction, strict: boolean): boolean {
  return action !== "notify" && strict;
}

export default function StrictModeField({
  id,
  label,
  calls,
  action,
  strict,
  onChange,
  className = "",
}: {
  /** The help text's id is `${id}-strict-help`. */
  id: string;
  label: string;
  /** Whose worst-case cost is reserved: "call's", "tagged call's". */
  calls: string;
  action: BudgetAction;
  strict: boolean;
  onChange: (strict: boolean) => void;
  className?: string;
}) {
  return (
    <label className={`flex items-start gap-3 text-sm ${className}`.trim()}>
      <input
        type="checkbox"
        className="mt-0.5 h-4 w-4 accent-mono-900 dark:accent-mono-100"
        checked={strictWith(action, strict)}
        disabled={action === "notify"}
        onChange={(e) => onChange(e.target.checked)}
        aria-describedby={`${id}-strict-help`}
      />
      <span>
        {label}
        <span id={`${id}-strict-help`} className="muted block text-xs">
          {action === "notify"
            ? "Choose block or switch to enforce the limit strictly."
            : `Reserve each ${calls} worst-case cost before it runs, so concurrent calls cannot overshoot.`}
        </span>
      </span>
    </label>
  );
}
