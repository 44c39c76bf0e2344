/** Prometheus's text exposition format, as the contract tests read a scrape. */

/** Samples of Prometheus's text format: `name{labels}` → value. */
export function parseMetrics(text: string): Map<string, number> {
    const samples = new Map<string, number>();
    for (const line of text.split("\n")) {
        const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
        if (m !== null) {
            samples.set(`${m[1]}${m[2] ?? ""}`, Number(m[3]));
        }
    }
    return samples;
}

/** The sum of a metric's samples whose labels include `labels`. */
export function sum(samples: Map<string, number>, name: string, labels: Record<string, string>): number {
    let total = 0;
    for (const [key, value] of samples) {
        if ((key === name || key.startsWith(`${name}{`)) && Object.entries(labels).every(([k, v]) => key.includes(`${k}="${v}"`))) {
            total += value;
        }
    }
    return total;
}
