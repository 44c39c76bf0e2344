/**
 * Reads the linters' JSON reports on the rendered stacks, sets each finding against the
 * committed exceptions (.ci/lint/exceptions.yaml) and fails when a finding has no exception or
 * an exception matches no finding.
 *
 *   ts-node scripts/lint-triage.ts <reportDir> <stack>...
 *
 * expects <reportDir>/<stack>.kube-score.json and <reportDir>/<stack>.checkov.json.
 */
import * as fs from "fs";
import * as path from "path";
import * as YAML from "yaml";

/** One finding of one tool on one object of one stack. */
export interface LintFinding {
    readonly tool: string;
    readonly stack: string;
    readonly check: string;
    /** `Kind/name`. */
    readonly object: string;
    readonly detail: string;
}

/** One accepted finding pattern. */
export interface LintException {
    readonly check: string;
    readonly objects: readonly string[];
    readonly stacks?: readonly string[];
    readonly why: string;
}

/** Exceptions per tool. */
export type ExceptionList = Readonly<Record<string, readonly LintException[]>>;

/** kube-score's `-o json` report: every check graded below "all OK" that was not skipped. */
export function kubeScoreFindings(stack: string, report: any[]): LintFinding[] {
    return report.flatMap((o) => (o.checks ?? [])
        .filter((c: any) => !c.skipped && c.grade < 10)
        .map((c: any) => ({
            tool: "kube-score",
            stack,
            check: c.check.id,
            object: `${o.type_meta.kind}/${o.object_meta.name}`,
            detail: [...new Set((c.comments ?? []).map((x: any) => `${x.path ? `${x.path}: ` : ""}${x.summary}`))].join("; "),
        })));
}

/** checkov's `-o json` report (one framework, or a list of them): every failed check. */
export function checkovFindings(stack: string, report: any): LintFinding[] {
    const parts: any[] = Array.isArray(report) ? report : [report];
    return parts.flatMap((p) => (p.results?.failed_checks ?? []).map((c: any) => {
        const [kind, , ...name] = String(c.resource).split(".");
        return { tool: "checkov", stack, check: c.check_id, object: `${kind}/${name.join(".")}`, detail: c.check_name };
    }));
}

/** Resources checkov parsed in a report (0 when it found nothing to check). */
export function checkedResources(report: any): number {
    const parts: any[] = Array.isArray(report) ? report : [report];
    return parts.reduce((n, p) => n + Number(p?.summary?.resource_count ?? 0), 0);
}

const glob = (pattern: string): RegExp =>
    new RegExp(`^${pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);

/** Whether an exception covers a finding. */
export function covers(e: LintException, f: LintFinding): boolean {
    return e.check === f.check
        && (e.stacks === undefined || e.stacks.includes(f.stack))
        && e.objects.some((o) => glob(o).test(f.object));
}

/** Sorts findings into accepted and unjustified, and finds exceptions nothing matched. */
export function triage(findings: readonly LintFinding[], exceptions: ExceptionList): {
    accepted: Array<LintFinding & { why: string }>;
    unjustified: LintFinding[];
    stale: Array<{ tool: string; exception: LintException }>;
    problems: string[];
} {
    const problems: string[] = [];
    for (const [tool, list] of Object.entries(exceptions)) {
        for (const e of list) {
            if (typeof e.why !== "string" || e.why.trim().length < 20) {
                problems.push(`${tool} ${e.check}: every exception needs a one-line justification in 'why'`);
            }
            if (!Array.isArray(e.objects) || e.objects.length === 0) {
                problems.push(`${tool} ${e.check}: list the objects it applies to`);
            }
        }
    }
    const accepted: Array<LintFinding & { why: string }> = [];
    const unjustified: LintFinding[] = [];
    const used = new Set<LintException>();
    for (const f of findings) {
        const e = (exceptions[f.tool] ?? []).find((x) => covers(x, f));
        if (e === undefined) {
            unjustified.push(f);
        } else {
            used.add(e);
            accepted.push({ ...f, why: e.why });
        }
    }
    const stale = Object.entries(exceptions).flatMap(([tool, list]) =>
        list.filter((e) => !used.has(e)).map((exception) => ({ tool, exception })));
    return { accepted, unjustified, stale, problems };
}

function main(argv: string[]): number {
    const [reportDir, ...stacks] = argv;
    if (reportDir === undefined || stacks.length === 0) {
        console.error("usage: lint-triage <reportDir> <stack>...");
        return 2;
    }
    const exceptions: ExceptionList = YAML.parse(fs.readFileSync(path.join(__dirname, "..", ".ci", "lint", "exceptions.yaml"), "utf8"));
    const findings: LintFinding[] = [];
    const empty: string[] = [];
    for (const stack of stacks) {
        const read = (tool: string) => JSON.parse(fs.readFileSync(path.join(reportDir, `${stack}.${tool}.json`), "utf8"));
        const kubeScore = read("kube-score");
        const checkov = read("checkov");
        // A tool that checked nothing proves nothing: fail rather than report zero findings.
        if (!Array.isArray(kubeScore) || kubeScore.length === 0) {
            empty.push(`kube-score checked no object of stack ${stack}`);
        }
        if (checkedResources(checkov) === 0) {
            empty.push(`checkov checked no resource of stack ${stack}`);
        }
        console.log(`${stack.padEnd(9)} kube-score checked ${Array.isArray(kubeScore) ? kubeScore.length : 0} objects, checkov ${checkedResources(checkov)} resources`);
        findings.push(...kubeScoreFindings(stack, kubeScore), ...checkovFindings(stack, checkov));
    }
    const result = triage(findings, exceptions);
    result.problems.push(...empty);

    for (const stack of stacks) {
        for (const tool of ["kube-score", "checkov"]) {
            const mine = (l: readonly LintFinding[]) => l.filter((f) => f.stack === stack && f.tool === tool).length;
            console.log(`${stack.padEnd(9)} ${tool.padEnd(10)} findings: ${mine(findings)}  accepted by exception: ${mine(result.accepted)}  unjustified: ${mine(result.unjustified)}`);
        }
    }
    for (const a of result.accepted) {
        console.log(`  accepted  ${a.stack} ${a.tool} ${a.check} ${a.object}`);
    }
    for (const f of result.unjustified) {
        console.log(`  FINDING   ${f.stack} ${f.tool} ${f.check} ${f.object}: ${f.detail}`);
    }
    for (const s of result.stale) {
        console.log(`  STALE     ${s.tool} ${s.exception.check} ${s.exception.objects.join(", ")}: matches no finding any more; remove it from .ci/lint/exceptions.yaml`);
    }
    for (const p of result.problems) {
        console.log(`  INVALID   ${p}`);
    }
    const failed = result.unjustified.length + result.stale.length + result.problems.length;
    console.log(failed === 0 ? "lint: no unjustified finding" : `lint: ${failed} problem(s); fix the manifests or justify them in .ci/lint/exceptions.yaml`);
    return failed === 0 ? 0 : 1;
}

if (require.main === module) {
    process.exit(main(process.argv.slice(2)));
}
