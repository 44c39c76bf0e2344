/**
 * Contract tests of the shared-cluster stack (`dev`): two server replicas from its render against one
 * database, behind an Ingress for `mlflow.example.com` (a reverse proxy on loopback spreads requests
 * over both pods, as the controller and the Service would), with browser-like requests, a real
 * browser, concurrent clients and the encryption of gateway secrets.
 */
import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import { chromium } from "playwright-core";
import { ROOT } from "../harness";
import { Ingress, startIngress } from "./lib/ingress";
import { createRuns, logBatchBody, percentile, runLoad } from "./lib/load";
import { CACHE, Platform, phase, printPhases, request } from "./lib/platform";
import { setPidFile, stopAll } from "./lib/processes";
import { TYPES } from "./lib/rendered";

const RUN = path.join(CACHE, "run-dev");
const HOST = "mlflow.example.com";
const EXTRA_ORIGIN = "https://notebooks.example.com";
const CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
];

describe("contract: the shared-cluster (dev) stack with two replicas behind an Ingress", function () {
    this.timeout(900000);

    const p = new Platform({ stack: "dev", dir: RUN, overrides: { ingressHost: HOST, corsAllowedOrigins: EXTRA_ORIGIN } });
    let ingress: Ingress;
    const admin = () => `${p.admin.user}:${p.admin.password}`;
    /** A state-changing API call sent straight to one pod with an Origin header, as a browser sends it. */
    const createExperiment = (port: number, name: string, origin?: string) => request(port, {
        path: "/api/2.0/mlflow/experiments/create", method: "POST", host: HOST, auth: admin(), json: { name },
        headers: origin === undefined ? {} : { Origin: origin },
    });

    before(async function () {
        setPidFile(path.join(RUN, "pids"));
        await phase("dev stack: moto, render, provision, PostgreSQL, migration, two servers", () => p.bringUp());
        ingress = await startIngress(HOST, p.pods.map((pod) => pod.port), "<html><body>a foreign site</body></html>");
    });

    after(async function () {
        await ingress?.close();
        await stopAll();
        printPhases();
        console.log(`      logs: ${path.relative(ROOT, p.logs)}`);
    });

    it("runs the dev stack's two replicas against one database, with one admin user", async function () {
        expect(p.pods).to.have.length(2);
        for (const pod of p.pods) {
            const res = await request(pod.port, { path: "/api/2.0/mlflow/experiments/search?max_results=1", host: HOST, auth: admin() });
            expect(res.status, `pod on port ${pod.port}`).to.equal(200);
        }
        expect(await p.sql(p.db.auth, "SELECT count(*) FROM users")).to.deep.equal([["1"]]);
    });

    it("lets browsers on the Ingress's origin and the configured origin write, on both replicas, and refuses a foreign origin", async function () {
        const cases: Array<[string | undefined, number]> = [
            [`http://${HOST}`, 200], [EXTRA_ORIGIN, 200], ["http://localhost:8080", 200], [undefined, 200],
            ["https://evil.example.com", 403], [`https://${HOST}`, 403], ["http://mlflow.example.com.evil.example", 403],
        ];
        const seen: string[] = [];
        for (const [i, pod] of p.pods.entries()) {
            for (const [j, [origin, expected]] of cases.entries()) {
                const res = await createExperiment(pod.port, `cors-${i}-${j}`, origin);
                expect(res.status, `pod ${i}, Origin ${origin ?? "(none)"}: ${res.body.toString().slice(0, 200)}`).to.equal(expected);
                if (expected === 403) {
                    expect(res.body.toString()).to.match(/Cross-origin request blocked/);
                }
                seen.push(`${origin ?? "none"}=${res.status}`);
            }
        }
        // Reads are not blocked, but a foreign page gets no CORS grant to see them.
        const read = await request(p.pods[0]!.port, { path: "/api/2.0/mlflow/experiments/search?max_results=1", host: HOST, auth: admin(), headers: { Origin: "https://evil.example.com" } });
        expect(read.status).to.equal(200);
        console.log(`      CORS on both replicas: ${[...new Set(seen)].join(", ")}`);
    });

    it("serves concurrent clients through the Ingress from both replicas, with no error", async function () {
        const target = { port: ingress.port, host: HOST, auth: admin() };
        const before = new Map(ingress.served);
        const { runIds } = await createRuns(target, "dev-concurrent", 16);
        const bodies = runIds.map((id) => Array.from({ length: 5 }, (_, b) => logBatchBody(id, b, 50, 10)));
        const load = await phase("16 clients x 5 log_batch through the Ingress", () => runLoad(target, "/api/2.0/mlflow/runs/log-batch", bodies));
        expect(load.errors, JSON.stringify(load.errorSamples)).to.equal(0);
        const shares = [...ingress.served].map(([port, n]) => n - (before.get(port) ?? 0));
        expect(shares.every((n) => n > 0), `requests per replica: ${shares}`).to.equal(true);
        console.log(`      ${load.requests} log_batch in ${load.wallSeconds.toFixed(1)} s (p50 ${percentile(load.latenciesMs, 50).toFixed(0)} ms), ` +
            `requests per replica ${shares.join(" / ")}`);
    });

    it("lets the UI, opened at the Ingress host in a browser, create an experiment; a foreign site cannot", async function () {
        const profile = fs.mkdtempSync(path.join(RUN, "chromium-"));
        const context = await chromium.launchPersistentContext(profile, {
            executablePath: "/usr/bin/chromium", headless: true,
            args: [...CHROMIUM_FLAGS, `--proxy-server=http://127.0.0.1:${ingress.port}`, "--proxy-bypass-list=<-loopback>"],
            httpCredentials: { username: p.admin.user, password: p.admin.password },
        });
        try {
            const page = await context.newPage();
            await page.goto(`http://${HOST}/`, { waitUntil: "domcontentloaded" });
            // What the UI's "Create experiment" does: a same-origin POST, with the Origin the browser adds.
            const status = await page.evaluate(async () => (await fetch("/ajax-api/2.0/mlflow/experiments/create", {
                method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name: "from-the-ui" }),
            })).status);
            expect(status).to.equal(200);
            await page.goto("http://evil.example.com/", { waitUntil: "domcontentloaded" });
            // A simple cross-site request (no preflight): it reaches the server, which must refuse it.
            await page.evaluate(async (host) => {
                await fetch(`http://${host}/ajax-api/2.0/mlflow/experiments/create`, {
                    method: "POST", mode: "no-cors", credentials: "include", headers: { "Content-Type": "text/plain" },
                    body: JSON.stringify({ name: "from-a-foreign-site" }),
                }).catch(() => undefined);
            }, HOST);
        } finally {
            await context.close();
        }
        const names = (await p.sql(p.db.tracking, "SELECT name FROM experiments WHERE name LIKE 'from-%' ORDER BY name")).map(([n]) => n);
        expect(names).to.deep.equal(["from-the-ui"]);
        const refused = p.pods.some((pod) => /POST \/ajax-api\/2\.0\/mlflow\/experiments\/create.* 403/.test(fs.readFileSync(pod.service.logFile, "utf8")));
        console.log(`      browser: the UI's origin created "from-the-ui"; the foreign site's request ${refused ? "reached a replica and got 403" : "was stopped by the browser"}`);
    });

    it("encrypts gateway secrets with the stack's passphrase, shared by both replicas, never MLflow's public default", async function () {
        const secretName = "contract-provider-key";
        const value = { api_key: "not-a-real-key-contract-test" };
        const res = await request(p.pods[0]!.port, {
            path: "/api/3.0/mlflow/gateway/secrets/create", method: "POST", host: HOST, auth: admin(),
            json: { secret_name: secretName, secret_value: value, provider: "openai" },
        });
        expect(res.status, res.body.toString().slice(0, 300)).to.equal(200);
        const id = JSON.parse(res.body.toString()).secret.secret_id;
        // The other replica reads it (decrypting its key needs the same passphrase).
        const other = await request(p.pods[1]!.port, { path: `/api/3.0/mlflow/gateway/secrets/get?secret_id=${id}`, host: HOST, auth: admin() });
        expect(other.status, other.body.toString().slice(0, 300)).to.equal(200);
        const serverSecret = p.r.one(TYPES.secret, /mlflow-server/).state.metadata.name;
        const check = await p.python("kek-check", {
            connection: { host: "127.0.0.1", port: p.postgres.port, dbname: p.db.tracking, user: p.db.user, password: p.db.password },
            secretName, expected: value, passphrase: p.r.secretValue(serverSecret, "kek-passphrase"),
        });
        expect(check.stack, "the stack's passphrase decrypts it").to.equal("ok");
        expect(check.default, "MLflow's public passphrase does not").to.not.equal("ok");
        for (const pod of p.pods) {
            expect(fs.readFileSync(pod.service.logFile, "utf8")).to.not.match(/MLFLOW_CRYPTO_KEK_PASSPHRASE not set/);
        }
        console.log(`      gateway secret: decrypts with the stack's passphrase; MLflow's default passphrase -> ${check.default}`);
    });
});
