/**
 * What the benchmarks share: their log lines, medians, and the wait for a quiet machine before each
 * measurement.
 */
import { ForeignCpu, loadAverage, treeCpuSeconds } from "../../test/integration/lib/procfs";

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A log function whose lines carry the tool's name, the time and the 1-minute load average. */
export function logger(name: string): (message: string) => void {
    return (message) => console.log(`[${name} ${new Date().toISOString().slice(11, 19)} load ${loadAverage()[0].toFixed(2)}] ${message}`);
}

/** The median of the finite values; NaN when there is none. */
export function median(values: readonly number[]): number {
    const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
    if (v.length === 0) {
        return NaN;
    }
    const mid = Math.floor(v.length / 2);
    return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/** Seconds a measurement waits for the benchmark's own services to settle (a server still busy with the last one). */
export const OWN_SETTLE_S = 60;

/**
 * Waits until other work leaves the machine (another session's tests, a build): on two cores it
 * would take CPU from the server and the load generator and widen every range. Quiet is others
 * (anything outside this process's tree) under 0.4 cores for 5 s, and this benchmark's own
 * services too, for at most {@link OWN_SETTLE_S}: a server that keeps working after a load test
 * (MLflow's defaults do) is measured as it is rather than waited for. A server that stopped during
 * the window counts as "others" once (its processes leave the tree with their CPU time); the next
 * window clears it. Returns the wait.
 */
export async function waitForQuiet(quietWaitS: number, log: (message: string) => void): Promise<number> {
    const t0 = Date.now();
    for (let warned = false; (Date.now() - t0) / 1000 < quietWaitS;) {
        const others = new ForeignCpu();
        const own0 = treeCpuSeconds(process.pid);
        await sleep(5000);
        const othersCores = others.coresBusy();
        const ownCores = (treeCpuSeconds(process.pid) - own0) / 5;
        const ownSettled = ownCores < 0.4 || (Date.now() - t0) / 1000 >= OWN_SETTLE_S;
        if (othersCores < 0.4 && ownSettled) {
            break;
        }
        if (!warned) {
            log(`the machine is busy (others ${othersCores.toFixed(2)} cores, this benchmark's services ${ownCores.toFixed(2)}): `
                + `waiting up to ${quietWaitS} s for others, ${OWN_SETTLE_S} s for its own`);
            warned = true;
        }
    }
    return (Date.now() - t0) / 1000;
}

