/** One broken rule: which rule, where in the object, and what to change. */
export interface Finding {
    /** Stable rule id, e.g. `pss.allowPrivilegeEscalation` or `S3.5`. */
    readonly rule: string;
    /** Dotted path of the offending field inside the checked object. */
    readonly path: string;
    /** What is wrong and what would be right. */
    readonly message: string;
}

/** Renders findings as one line each, for assertion messages and policy violations. */
export function describe(findings: readonly Finding[]): string {
    return findings.map((f) => `${f.rule} at ${f.path}: ${f.message}`).join("\n");
}

/** The distinct rules that produced some findings, sorted. */
export function rulesOf(findings: readonly Finding[]): string[] {
    return [...new Set(findings.map((f) => f.rule))].sort();
}
