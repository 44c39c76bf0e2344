/**
 * The Grafana dashboard for the server's Prometheus metrics (docs/grafana/mlflow-server.json,
 * README "Monitoring"): importable as it is (no id, a uid, schema 39 or later), a layout with
 * unique panel ids and no overlapping panels, every query on the server's own metric families
 * only, filtered by the `namespace` and `pod` variables, through the `${datasource}` variable,
 * and covering request rate, errors and latency. The checks are one pure function; each kind of
 * problem it reports is shown to be reported on a dashboard broken in that one way.
 */
import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";

const ROOT = path.resolve(__dirname, "..");
const DASHBOARD_FILE = path.join(ROOT, "docs", "grafana", "mlflow-server.json");

/**
 * The series names the server's /metrics can answer with: MLflow's exporter (README "Monitoring",
 * seen by the contract test on the real server), a counter and the histograms' three series each.
 */
const COUNTERS = ["mlflow_http_request_total"];
const HISTOGRAMS = ["mlflow_http_request_duration_seconds", "mlflow_otlp_request_duration_seconds", "mlflow_otlp_request_payload_bytes"];
const ALLOWED_METRICS = new Set([...COUNTERS, ...HISTOGRAMS.flatMap((h) => ["_bucket", "_sum", "_count"].map((s) => h + s))]);
/** Labels of those series, and the target labels a pod scrape (annotations or ServiceMonitor) adds. */
const KNOWN_LABELS = new Set(["method", "status", "mlflow_version", "le", "namespace", "pod", "job", "instance", "container", "endpoint"]);

const FUNCTIONS = new Set([
    // aggregations
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    // functions
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "day_of_month", "day_of_week",
    "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor", "histogram_avg", "histogram_count", "histogram_fraction",
    "histogram_quantile", "histogram_stddev", "histogram_stdvar", "histogram_sum", "hour", "idelta", "increase", "irate",
    "label_join", "label_replace", "ln", "log2", "log10", "minute", "month", "predict_linear", "rate", "resets", "round", "scalar",
    "sgn", "sort", "sort_desc", "sqrt", "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time", "max_over_time",
    "sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time",
    "present_over_time", "start", "end",
]);
const GROUPING = new Set(["by", "without", "on", "ignoring", "group_left", "group_right"]);
const KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", ...GROUPING]);
const RATE_INTERVAL = new Set(["$__rate_interval", "${__rate_interval}"]);
const NAMESPACE_VALUES = new Set(["$namespace", "${namespace}"]);
const POD_VALUES = new Set(["$pod", "${pod}"]);
const DATASOURCE_REFS = new Set(["$datasource", "${datasource}"]);
const GRID_COLUMNS = 24;

/** Every kind of problem `dashboardProblems` reports; each message starts with its code and a colon. */
const CODES = [
    "dashboard-id", "uid", "title", "schema-version", "no-panels", "panel-id", "duplicate-id", "panel-type", "grid-pos", "overlap",
    "no-targets", "syntax", "unknown-metric", "nameless-selector", "unknown-function", "unknown-label", "namespace-filter",
    "pod-filter", "range", "datasource", "variable", "url", "credential",
    "coverage-rate", "coverage-5xx", "coverage-4xx", "coverage-quantile", "coverage-mean", "coverage-pod",
] as const;
type Code = (typeof CODES)[number];

interface Token { kind: "ident" | "string" | "number" | "variable" | "punct" | "op"; text: string; value: string }
interface Matcher { label: string; op: string; value: string }
interface Selector { metric: string | undefined; matchers: Matcher[] }
/** What a query reads, as far as these checks need: its vector selectors, functions, grouping labels and ranges. */
interface Query { selectors: Selector[]; functions: string[]; grouping: string[]; ranges: string[]; errors: string[] }

const OPERATORS = ["=~", "!~", "!=", "==", ">=", "<=", "=", ">", "<", "+", "-", "*", "/", "%", "^", "@", ":"];

/** PromQL (with Grafana's `$variables`) into tokens; strings are read whole, so brackets inside them do not count. */
function tokenize(expr: string): { tokens: Token[]; errors: string[] } {
    const tokens: Token[] = [];
    const errors: string[] = [];
    let i = 0;
    const push = (kind: Token["kind"], text: string, value = text) => { tokens.push({ kind, text, value }); i += text.length; };
    while (i < expr.length) {
        const rest = expr.slice(i);
        const c = expr.charAt(i);
        let m: RegExpExecArray | null;
        if (/\s/.test(c)) { i++; continue; }
        if (c === "#") { const nl = expr.indexOf("\n", i); i = nl < 0 ? expr.length : nl; continue; }
        if (c === '"' || c === "'" || c === "`") {
            let j = i + 1;
            while (j < expr.length && expr.charAt(j) !== c) j += c !== "`" && expr.charAt(j) === "\\" ? 2 : 1;
            if (j >= expr.length) { errors.push(`unterminated string at ${i}`); return { tokens, errors }; }
            const raw = expr.slice(i, j + 1);
            push("string", raw, c === "`" ? raw.slice(1, -1) : raw.slice(1, -1).replace(/\\(.)/g, "$1"));
            continue;
        }
        if ((m = /^(?:\$\{[^}]*\}|\$\w+)/.exec(rest))) { push("variable", m[0]); continue; }
        if ((m = /^(?:(?:\d+(?:ms|[smhdwy]))+|0x[0-9a-fA-F]+|\d*\.?\d+(?:[eE][+-]?\d+)?)/.exec(rest))) { push("number", m[0]); continue; }
        if ((m = /^[a-zA-Z_][a-zA-Z0-9_:]*/.exec(rest))) { push("ident", m[0]); continue; }
        if ("(){}[],".includes(c)) { push("punct", c); continue; }
        const op = OPERATORS.find((o) => rest.startsWith(o));
        if (op) { push("op", op); continue; }
        errors.push(`unexpected character ${JSON.stringify(c)} at ${i}`);
        i++;
    }
    return { tokens, errors };
}

/** Brackets of every kind closed in order, outside strings. */
function balanceErrors(tokens: Token[]): string[] {
    const pairs: Record<string, string> = { ")": "(", "]": "[", "}": "{" };
    const open: string[] = [];
    for (const t of tokens) {
        if (t.kind !== "punct") continue;
        if ("([{".includes(t.text)) open.push(t.text);
        else if (t.text in pairs) {
            const last = open.pop();
            if (last !== pairs[t.text]) return [`unbalanced ${JSON.stringify(t.text)} (open: ${last === undefined ? "none" : JSON.stringify(last)})`];
        }
    }
    return open.length ? [`unclosed ${open.map((o) => JSON.stringify(o)).join(" ")}`] : [];
}

function parseQuery(expr: string): Query {
    const { tokens, errors } = tokenize(expr);
    errors.push(...balanceErrors(tokens));
    const q: Query = { selectors: [], functions: [], grouping: [], ranges: [], errors };
    /** Reads `{label op "value", ...}` from the `{` at `start`; returns the index of its `}`. */
    const readMatchers = (start: number, sel: Selector): number => {
        let j = start + 1;
        while (j < tokens.length && tokens[j]!.text !== "}") {
            const [label, op, value] = [tokens[j], tokens[j + 1], tokens[j + 2]];
            if (label?.kind !== "ident" || op?.kind !== "op" || !["=", "!=", "=~", "!~"].includes(op.text) || value?.kind !== "string") {
                q.errors.push(`malformed label matcher at ${JSON.stringify(label?.text ?? "end")}`);
                while (j < tokens.length && tokens[j]!.text !== "}") j++;
                return j;
            }
            sel.matchers.push({ label: label.text, op: op.text, value: value.value });
            j += 3;
            if (tokens[j]?.text === ",") j++;
        }
        return j;
    };
    for (let i = 0; i < tokens.length; i++) {
        const t = tokens[i]!;
        const next = tokens[i + 1];
        if (t.kind === "ident") {
            if (next?.text === "(" && GROUPING.has(t.text)) {
                let j = i + 2;
                for (; j < tokens.length && tokens[j]!.text !== ")"; j++) if (tokens[j]!.kind === "ident") q.grouping.push(tokens[j]!.text);
                i = j;
            } else if (next?.text === "(" || (next?.kind === "ident" && ["by", "without"].includes(next.text))) {
                // a call, or an aggregation with its grouping first: `sum by (le) (...)`
                q.functions.push(t.text);
            } else if (!KEYWORDS.has(t.text.toLowerCase())) {
                const sel: Selector = { metric: t.text, matchers: [] };
                if (next?.text === "{") i = readMatchers(i + 1, sel);
                q.selectors.push(sel);
            }
        } else if (t.text === "{") {
            const sel: Selector = { metric: undefined, matchers: [] };
            i = readMatchers(i, sel);
            q.selectors.push(sel);
        } else if (t.text === "[") {
            let j = i + 1;
            const inside: string[] = [];
            for (; j < tokens.length && tokens[j]!.text !== "]"; j++) inside.push(tokens[j]!.text);
            q.ranges.push(inside.join(""));
            i = j;
        }
    }
    return q;
}

/** Whether a matcher selects the given label value (negative matchers never count). */
function accepts(m: Matcher, value: string): boolean {
    if (m.op === "=") return m.value === value;
    if (m.op !== "=~") return false;
    try {
        return new RegExp(`^(?:${m.value})$`).test(value);
    } catch {
        return false;
    }
}

const isDatasourceRef = (ds: unknown): boolean =>
    (typeof ds === "string" && DATASOURCE_REFS.has(ds)) ||
    (typeof ds === "object" && ds !== null && DATASOURCE_REFS.has((ds as any).uid) && [undefined, "prometheus"].includes((ds as any).type));

/** Every `[path, key, value]` of a JSON value, depth first. */
function* walk(value: unknown, at = "$"): Generator<[string, string, unknown]> {
    if (Array.isArray(value)) { for (const [i, v] of value.entries()) yield* walk(v, `${at}[${i}]`); return; }
    if (typeof value !== "object" || value === null) return;
    for (const [k, v] of Object.entries(value)) {
        yield [`${at}.${k}`, k, v];
        yield* walk(v, `${at}.${k}`);
    }
}

const variableQuery = (v: any): string => (typeof v?.query === "string" ? v.query : String(v?.query?.query ?? ""));

/**
 * Everything wrong with a dashboard, as `code: where: what` lines; none for a good one.
 * Pure: reads the parsed JSON only.
 */
function dashboardProblems(dashboard: any): string[] {
    const problems: string[] = [];
    const problem = (code: Code, msg: string) => problems.push(`${code}: ${msg}`);

    if (dashboard?.id !== null && dashboard?.id !== undefined) problem("dashboard-id", `id ${JSON.stringify(dashboard.id)}: must be null or absent to import`);
    if (typeof dashboard?.uid !== "string" || !/^[A-Za-z0-9_-]{1,40}$/.test(dashboard.uid)) problem("uid", `uid ${JSON.stringify(dashboard?.uid)}: 1 to 40 letters, digits, - or _`);
    if (typeof dashboard?.title !== "string" || !dashboard.title.trim()) problem("title", "no title");
    if (typeof dashboard?.schemaVersion !== "number" || dashboard.schemaVersion < 39) problem("schema-version", `schemaVersion ${JSON.stringify(dashboard?.schemaVersion)} < 39`);
    const panels: any[] = Array.isArray(dashboard?.panels) ? dashboard.panels : [];
    if (!panels.length) problem("no-panels", "no panels");

    // Layout.
    const seen = new Map<unknown, string>();
    const boxes: { name: string; x: number; y: number; w: number; h: number }[] = [];
    for (const [i, p] of panels.entries()) {
        const name = `panel ${JSON.stringify(p?.title ?? i)}`;
        if (!Number.isInteger(p?.id) || p.id < 1) problem("panel-id", `${name}: id ${JSON.stringify(p?.id)} is not a positive integer`);
        else if (seen.has(p.id)) problem("duplicate-id", `${name}: id ${p.id} also used by ${seen.get(p.id)}`);
        else seen.set(p.id, name);
        if (!["timeseries", "stat"].includes(p?.type)) problem("panel-type", `${name}: type ${JSON.stringify(p?.type)} is not timeseries or stat`);
        const g = p?.gridPos;
        const ints = ["x", "y", "w", "h"].every((k) => Number.isInteger(g?.[k]));
        if (!ints || g.x < 0 || g.y < 0 || g.w <= 0 || g.h <= 0 || g.x + g.w > GRID_COLUMNS) {
            problem("grid-pos", `${name}: gridPos ${JSON.stringify(g)} is not inside the ${GRID_COLUMNS} columns with w, h > 0`);
        } else {
            for (const b of boxes) {
                if (g.x < b.x + b.w && b.x < g.x + g.w && g.y < b.y + b.h && b.y < g.y + g.h) problem("overlap", `${name} overlaps ${b.name}`);
            }
            boxes.push({ name, x: g.x, y: g.y, w: g.w, h: g.h });
        }
    }

    // Queries.
    const queries: Query[] = [];
    for (const [i, p] of panels.entries()) {
        const name = `panel ${JSON.stringify(p?.title ?? i)}`;
        const targets: any[] = Array.isArray(p?.targets) ? p.targets : [];
        if (!targets.length) problem("no-targets", `${name}: no targets`);
        if (!isDatasourceRef(p?.datasource)) problem("datasource", `${name}: datasource ${JSON.stringify(p?.datasource)} is not \${datasource}`);
        for (const [k, t] of targets.entries()) {
            const where = `${name} target ${t?.refId ?? k}`;
            if (!isDatasourceRef(t?.datasource)) problem("datasource", `${where}: datasource ${JSON.stringify(t?.datasource)} is not \${datasource}`);
            if (typeof t?.expr !== "string" || !t.expr.trim()) { problem("syntax", `${where}: no expr`); continue; }
            const q = parseQuery(t.expr);
            queries.push(q);
            for (const e of q.errors) problem("syntax", `${where}: ${e}`);
            if (!q.selectors.length) problem("nameless-selector", `${where}: reads no metric`);
            for (const f of q.functions) if (!FUNCTIONS.has(f)) problem("unknown-function", `${where}: ${f}() is not a PromQL function`);
            for (const l of q.grouping) if (!KNOWN_LABELS.has(l)) problem("unknown-label", `${where}: groups by unknown label ${l}`);
            for (const l of String(t.legendFormat ?? "").matchAll(/\{\{\s*(\w+)\s*\}\}/g)) {
                if (!KNOWN_LABELS.has(l[1]!)) problem("unknown-label", `${where}: legend names unknown label ${l[1]}`);
            }
            for (const r of q.ranges) if (!RATE_INTERVAL.has(r)) problem("range", `${where}: range [${r}] is not [$__rate_interval]`);
            for (const s of q.selectors) {
                const sel = `${s.metric ?? ""}{${s.matchers.map((m) => `${m.label}${m.op}"${m.value}"`).join(", ")}}`;
                if (s.metric === undefined) problem("nameless-selector", `${where}: ${sel} names no metric`);
                else if (!ALLOWED_METRICS.has(s.metric)) problem("unknown-metric", `${where}: ${s.metric} is not one of the server's metrics`);
                for (const m of s.matchers) if (!KNOWN_LABELS.has(m.label)) problem("unknown-label", `${where}: ${sel} matches unknown label ${m.label}`);
                if (!s.matchers.some((m) => m.label === "namespace" && m.op === "=" && NAMESPACE_VALUES.has(m.value))) {
                    problem("namespace-filter", `${where}: ${sel} lacks namespace="$namespace"`);
                }
                if (!s.matchers.some((m) => m.label === "pod" && m.op === "=~" && POD_VALUES.has(m.value))) {
                    problem("pod-filter", `${where}: ${sel} lacks pod=~"$pod"`);
                }
            }
        }
    }

    // Template variables.
    const vars: any[] = Array.isArray(dashboard?.templating?.list) ? dashboard.templating.list : [];
    const variable = (name: string) => vars.find((v) => v?.name === name);
    const ds = variable("datasource");
    if (ds?.type !== "datasource" || ds?.query !== "prometheus") problem("variable", "no variable datasource of type datasource, query prometheus");
    for (const [name, selector, multi] of [["namespace", "", false], ["pod", `\\{[^}]*namespace="\\$namespace"[^}]*\\}`, true]] as const) {
        const v = variable(name);
        const query = variableQuery(v);
        if (v?.type !== "query" || !new RegExp(`^label_values\\(\\s*mlflow_http_request_total\\s*${selector || "(?:\\{[^}]*\\})?"}\\s*,\\s*${name}\\s*\\)$`).test(query)) {
            problem("variable", `variable ${name}: ${JSON.stringify(query)} is not label_values(mlflow_http_request_total${selector ? '{namespace="$namespace"}' : ""}, ${name})`);
        }
        if (v && typeof v.definition === "string" && v.definition !== query) problem("variable", `variable ${name}: definition differs from its query`);
        if (multi && !(v?.multi === true && v?.includeAll === true)) problem("variable", `variable ${name}: not multi-select with All`);
    }

    // Anywhere in the file: datasources only through the variable, no address, no credential.
    for (const [at, key, value] of walk(dashboard)) {
        if (key === "datasource" && !isDatasourceRef(value)) problem("datasource", `${at}: ${JSON.stringify(value)} is not \${datasource}`);
        if (typeof value === "string" && /[a-z][a-z0-9+.-]*:\/\//i.test(value)) problem("url", `${at}: absolute URL in ${JSON.stringify(value.slice(0, 80))}`);
        if (/password|secret|token|api_?key|basic_?auth|secure_?json/i.test(key)) problem("credential", `${at}: key ${key}`);
    }

    // What it shows.
    const onRequests = (q: Query) => q.selectors.filter((s) => s.metric === "mlflow_http_request_total");
    const statusAccepts = (q: Query, ...codes: string[]) =>
        onRequests(q).some((s) => s.matchers.some((m) => m.label === "status" && codes.every((c) => accepts(m, c))));
    if (!queries.some((q) => q.functions.includes("rate") && onRequests(q).length)) problem("coverage-rate", "no rate() of mlflow_http_request_total");
    if (!queries.some((q) => statusAccepts(q, "500", "503"))) problem("coverage-5xx", "no mlflow_http_request_total selecting 5xx statuses");
    if (!queries.some((q) => statusAccepts(q, "401", "403"))) problem("coverage-4xx", "no mlflow_http_request_total selecting 401 and 403");
    if (!queries.some((q) => q.functions.includes("histogram_quantile") && q.grouping.includes("le")
        && q.selectors.some((s) => s.metric === "mlflow_http_request_duration_seconds_bucket"))) {
        problem("coverage-quantile", "no histogram_quantile over mlflow_http_request_duration_seconds_bucket by le");
    }
    if (!queries.some((q) => ["_sum", "_count"].every((s) => q.selectors.some((x) => x.metric === `mlflow_http_request_duration_seconds${s}`)))) {
        problem("coverage-mean", "no mean latency (mlflow_http_request_duration_seconds_sum over _count)");
    }
    if (!queries.some((q) => q.grouping.includes("pod") && onRequests(q).length)) problem("coverage-pod", "no mlflow_http_request_total by pod");
    return problems;
}

const load = (): any => JSON.parse(fs.readFileSync(DASHBOARD_FILE, "utf8"));
const exprsOf = (d: any): string[] => d.panels.flatMap((p: any) => p.targets.map((t: any) => t.expr));
/** Rewrites every expr of the dashboard. */
const everyExpr = (d: any, f: (e: string) => string) => d.panels.forEach((p: any) => p.targets.forEach((t: any) => { t.expr = f(t.expr); }));
/** The first target whose expr passes the test. */
const targetWhere = (d: any, test: (e: string) => boolean): any => d.panels.flatMap((p: any) => p.targets).find((t: any) => test(t.expr));
const panelTitled = (d: any, title: string): any => d.panels.find((p: any) => p.title === title);
const FILTER = 'namespace="$namespace", pod=~"$pod"';

/** A dashboard broken in one way, and the code that must be reported for it. */
interface BadCase { name: string; code: Code; mutate: (d: any) => void }
const BAD: BadCase[] = [
    { name: "a numeric dashboard id", code: "dashboard-id", mutate: (d) => { d.id = 7; } },
    { name: "no uid", code: "uid", mutate: (d) => { delete d.uid; } },
    { name: "an empty title", code: "title", mutate: (d) => { d.title = " "; } },
    { name: "schemaVersion 38", code: "schema-version", mutate: (d) => { d.schemaVersion = 38; } },
    { name: "no panels", code: "no-panels", mutate: (d) => { d.panels = []; } },
    { name: "a panel without an id", code: "panel-id", mutate: (d) => { delete d.panels[2].id; } },
    { name: "a duplicate panel id", code: "duplicate-id", mutate: (d) => { d.panels[3].id = d.panels[1].id; } },
    { name: "a panel of another type", code: "panel-type", mutate: (d) => { d.panels[0].type = "graph"; } },
    { name: "a panel wider than the grid", code: "grid-pos", mutate: (d) => { d.panels[5].gridPos.w = 13; } },
    { name: "a panel of height 0", code: "grid-pos", mutate: (d) => { d.panels[1].gridPos.h = 0; } },
    { name: "overlapping panels", code: "overlap", mutate: (d) => { d.panels[5].gridPos = { ...d.panels[4].gridPos, x: d.panels[4].gridPos.x + 6 }; } },
    { name: "a panel without targets", code: "no-targets", mutate: (d) => { d.panels[0].targets = []; } },
    { name: "a missing closing parenthesis", code: "syntax", mutate: (d) => { d.panels[0].targets[0].expr = d.panels[0].targets[0].expr.replace(/\)$/, ""); } },
    { name: "mismatched brackets", code: "syntax", mutate: (d) => { d.panels[0].targets[0].expr = d.panels[0].targets[0].expr.replace("[$__rate_interval])", "[$__rate_interval)]"); } },
    { name: "an extra closing brace", code: "syntax", mutate: (d) => { d.panels[0].targets[0].expr += "}"; } },
    { name: "an unterminated string", code: "syntax", mutate: (d) => { d.panels[0].targets[0].expr = 'sum(rate(mlflow_http_request_total{namespace="$namespace, pod=~"$pod"}[$__rate_interval]))'; } },
    { name: "an unknown metric name (typo)", code: "unknown-metric", mutate: (d) => { everyExpr(d, (e) => e.replace("mlflow_http_request_total", "mlflow_http_requests_total")); } },
    { name: "a metric of another exporter", code: "unknown-metric", mutate: (d) => { d.panels[0].targets[0].expr = `sum(up{${FILTER}})`; } },
    { name: "a selector by __name__ only", code: "nameless-selector", mutate: (d) => { d.panels[0].targets[0].expr = `sum(rate({__name__=~"mlflow_.+", ${FILTER}}[$__rate_interval]))`; } },
    { name: "a misspelt function", code: "unknown-function", mutate: (d) => { d.panels[0].targets[0].expr = d.panels[0].targets[0].expr.replace("rate(", "rates("); } },
    { name: "grouping by a label the metric lacks", code: "unknown-label", mutate: (d) => { d.panels[5].targets[0].expr = d.panels[5].targets[0].expr.replace("by (method)", "by (code)"); } },
    { name: "a matcher on a label the metric lacks", code: "unknown-label", mutate: (d) => { everyExpr(d, (e) => e.replace('status=~"5.."', 'code=~"5.."')); } },
    { name: "a legend naming a label the metric lacks", code: "unknown-label", mutate: (d) => { d.panels[5].targets[0].legendFormat = "{{handler}}"; } },
    {
        name: "one selector of a ratio without the namespace filter", code: "namespace-filter",
        mutate: (d) => { const t = targetWhere(d, (e) => e.includes(" / ")); t.expr = t.expr.replace(/namespace="\$namespace", (?=pod=~"\$pod"\}\[\$__rate_interval\]\)\)$)/, ""); },
    },
    { name: "a namespace filter by regex", code: "namespace-filter", mutate: (d) => { d.panels[0].targets[0].expr = d.panels[0].targets[0].expr.replace('namespace="', 'namespace=~"'); } },
    { name: "no pod filter", code: "pod-filter", mutate: (d) => { d.panels[0].targets[0].expr = d.panels[0].targets[0].expr.replace(', pod=~"$pod"', ""); } },
    { name: "a pod filter by equality (breaks multi-select)", code: "pod-filter", mutate: (d) => { d.panels[0].targets[0].expr = d.panels[0].targets[0].expr.replace('pod=~"', 'pod="'); } },
    { name: "a hard-coded rate range", code: "range", mutate: (d) => { d.panels[0].targets[0].expr = d.panels[0].targets[0].expr.replace("$__rate_interval", "5m"); } },
    { name: "a hard-coded datasource uid on a panel", code: "datasource", mutate: (d) => { d.panels[4].datasource = { type: "prometheus", uid: "P1809F7CD0C75ACF3" }; } },
    { name: "a hard-coded datasource uid on a target", code: "datasource", mutate: (d) => { d.panels[4].targets[1].datasource = { type: "prometheus", uid: "prometheus" }; } },
    { name: "a target without a datasource", code: "datasource", mutate: (d) => { delete d.panels[2].targets[0].datasource; } },
    { name: "a variable on a hard-coded datasource", code: "datasource", mutate: (d) => { d.templating.list[1].datasource = { type: "prometheus", uid: "abc123" }; } },
    { name: "no datasource variable", code: "variable", mutate: (d) => { d.templating.list = d.templating.list.filter((v: any) => v.name !== "datasource"); } },
    { name: "a namespace variable on another metric", code: "variable", mutate: (d) => { d.templating.list[1].query.query = "label_values(up, namespace)"; } },
    { name: "a pod variable without All", code: "variable", mutate: (d) => { d.templating.list[2].includeAll = false; } },
    { name: "an absolute URL", code: "url", mutate: (d) => { d.links = [{ title: "MLflow", type: "link", url: "https://mlflow.example.com/" }]; } },
    { name: "a credential", code: "credential", mutate: (d) => { d.panels[0].targets[0].basicAuthPassword = "hunter2"; } },
    { name: "no request rate", code: "coverage-rate", mutate: (d) => { everyExpr(d, (e) => e.replaceAll("rate(", "irate(")); } },
    { name: "no 5xx", code: "coverage-5xx", mutate: (d) => { everyExpr(d, (e) => e.replaceAll('"5.."', '"2.."')); } },
    { name: "no 401/403", code: "coverage-4xx", mutate: (d) => { everyExpr(d, (e) => e.replaceAll('"4.."', '"2.."').replaceAll('"401|403"', '"401"')); } },
    { name: "no latency quantile", code: "coverage-quantile", mutate: (d) => { d.panels = d.panels.filter((p: any) => !p.targets.some((t: any) => t.expr.includes("histogram_quantile"))); } },
    { name: "a quantile not by le", code: "coverage-quantile", mutate: (d) => { everyExpr(d, (e) => e.replaceAll("sum by (le", "sum by (method").replaceAll("by (method)", "by (status)")); } },
    { name: "no mean latency", code: "coverage-mean", mutate: (d) => { panelTitled(d, "Mean latency").targets = [{ ...panelTitled(d, "Mean latency").targets[0], expr: `sum(rate(mlflow_http_request_duration_seconds_sum{${FILTER}}[$__rate_interval]))` }]; } },
    { name: "no requests per pod", code: "coverage-pod", mutate: (d) => { d.panels = d.panels.filter((p: any) => p.title !== "Requests per pod"); } },
];

describe("Grafana dashboard (docs/grafana/mlflow-server.json)", () => {
    const dashboard = load();

    it("has no problem", () => {
        expect(dashboardProblems(dashboard)).to.deep.equal([]);
    });

    it("is the MLflow tracking server's, tagged, and says where its metrics come from", () => {
        expect(dashboard.title).to.equal("MLflow tracking server");
        expect(dashboard.uid).to.equal("mlflow-tracking-server");
        expect(dashboard.tags).to.include.members(["mlflow", "prometheus"]);
        for (const fact of ["9090", "/metrics", "--expose-prometheus", "ServiceMonitor", "prometheus.io/scrape", "Monitoring"]) {
            expect(dashboard.description, fact).to.include(fact);
        }
        for (const p of dashboard.panels) expect(p.description, `panel ${p.title}`).to.be.a("string").that.is.not.empty;
    });

    it("shows the latency's p50, p95 and p99, and each error ratio over all requests", () => {
        const exprs = exprsOf(dashboard);
        for (const q of ["0.5", "0.95", "0.99"]) expect(exprs.some((e) => e.startsWith(`histogram_quantile(${q}, sum by (le) (`)), `p${q}`).to.equal(true);
        for (const status of ["5..", "4..", "401|403"]) {
            expect(exprs, status).to.include(`(sum(rate(mlflow_http_request_total{${FILTER}, status=~"${status}"}[$__rate_interval])) or vector(0))`
                + ` / sum(rate(mlflow_http_request_total{${FILTER}}[$__rate_interval]))`);
        }
    });

    it("reads only the metric families README \"Monitoring\" documents", () => {
        const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
        const monitoring = readme.slice(readme.indexOf("## Monitoring"), readme.indexOf("\n## ", readme.indexOf("## Monitoring") + 1));
        for (const family of [...COUNTERS, ...HISTOGRAMS]) {
            const documented = monitoring.includes(`\`${family}`) || (family.startsWith("mlflow_otlp_request_") && monitoring.includes("`mlflow_otlp_request_*`"));
            expect(documented, family).to.equal(true);
        }
    });

    describe("the checks", () => {
        it("read selectors, matchers, functions, grouping and ranges from a query, strings whole", () => {
            const q = parseQuery('histogram_quantile(0.9, sum by (le, pod) (rate(mlflow_http_request_duration_seconds_bucket{pod=~"(a|b)[0-9]{2}", status!="404"}[$__rate_interval] offset 1h)))');
            expect(q.errors).to.deep.equal([]);
            expect(q.functions).to.deep.equal(["histogram_quantile", "sum", "rate"]);
            expect(q.grouping).to.deep.equal(["le", "pod"]);
            expect(q.ranges).to.deep.equal(["$__rate_interval"]);
            expect(q.selectors).to.deep.equal([{
                metric: "mlflow_http_request_duration_seconds_bucket",
                matchers: [{ label: "pod", op: "=~", value: "(a|b)[0-9]{2}" }, { label: "status", op: "!=", value: "404" }],
            }]);
            expect(parseQuery("sum(x) and on (pod) y or vector(0) > bool 1").selectors.map((s) => s.metric)).to.deep.equal(["x", "y"]);
        });

        for (const c of BAD) {
            it(`report ${c.code} for ${c.name}`, () => {
                const before = dashboardProblems(load());
                const broken = load();
                c.mutate(broken);
                const problems = dashboardProblems(broken);
                // A problem of that kind that the dashboard as committed does not have.
                expect(problems.filter((p) => p.startsWith(`${c.code}: `) && !before.includes(p)), problems.join("\n")).to.not.be.empty;
            });
        }

        it("each have a broken dashboard above that they report", () => {
            expect(CODES.filter((code) => !BAD.some((c) => c.code === code))).to.deep.equal([]);
        });
    });
});
