import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import * as YAML from "yaml";
import { checkedResources, checkovFindings, covers, ExceptionList, kubeScoreFindings, LintFinding, triage } from "../scripts/lint-triage";
import { ROOT } from "./harness";

const kubeScoreReport = [{
    type_meta: { kind: "Deployment" }, object_meta: { name: "mlflow-tracking-server" },
    checks: [
        { check: { id: "container-image-pull-policy" }, grade: 1, skipped: false, comments: [{ path: "mlflow", summary: "ImagePullPolicy is not set to Always" }] },
        { check: { id: "pod-networkpolicy" }, grade: 10, skipped: false, comments: [] },
        { check: { id: "deployment-replicas" }, grade: 5, skipped: true, comments: [] },
    ],
}];
const checkovReport = {
    summary: { resource_count: 4 },
    results: { failed_checks: [{ check_id: "CKV_K8S_40", check_name: "Containers should run as a high UID", resource: "StatefulSet.mlflow.mlflow-postgres" }] },
};
const finding = (over: Partial<LintFinding>): LintFinding => ({
    tool: "kube-score", stack: "dev", check: "container-image-pull-policy", object: "Job/mlflow-migrate-abc1234", detail: "", ...over,
});
const exception = { check: "container-image-pull-policy", objects: ["Job/mlflow-migrate-*"], why: "images are pinned to exact release tags" };

describe("lint triage", () => {
    it("reads kube-score's graded checks, skipping passed and skipped ones", () => {
        expect(kubeScoreFindings("dev", kubeScoreReport)).to.deep.equal([{
            tool: "kube-score", stack: "dev", check: "container-image-pull-policy", object: "Deployment/mlflow-tracking-server",
            detail: "mlflow: ImagePullPolicy is not set to Always",
        }]);
    });

    it("reads checkov's failed checks and how much it checked", () => {
        expect(checkovFindings("minikube", checkovReport).map((f) => `${f.check} ${f.object}`)).to.deep.equal(["CKV_K8S_40 StatefulSet/mlflow-postgres"]);
        expect(checkedResources(checkovReport)).to.equal(4);
        expect(checkedResources([])).to.equal(0);
    });

    it("matches exceptions by check, object glob and stack", () => {
        expect(covers(exception, finding({}))).to.equal(true);
        expect(covers(exception, finding({ object: "Deployment/mlflow-migrate-abc1234" }))).to.equal(false);
        expect(covers(exception, finding({ check: "pod-probes" }))).to.equal(false);
        expect(covers({ ...exception, stacks: ["minikube"] }, finding({}))).to.equal(false);
        expect(covers({ ...exception, objects: ["Job/mlflow.migrate"] }, finding({ object: "Job/mlflowXmigrate" }))).to.equal(false);
    });

    it("fails an unjustified finding, a stale exception and an exception without a reason", () => {
        const unjustified = triage([finding({ check: "pod-probes" })], { "kube-score": [] });
        expect(unjustified.unjustified).to.have.length(1);
        const stale = triage([], { "kube-score": [exception] });
        expect(stale.stale).to.have.length(1);
        const reasonless = triage([finding({})], { "kube-score": [{ ...exception, why: "" }] });
        expect(reasonless.problems).to.have.length(1);
        const clean = triage([finding({})], { "kube-score": [exception] });
        expect([clean.unjustified, clean.stale, clean.problems]).to.deep.equal([[], [], []]);
        expect(clean.accepted[0]!.why).to.equal(exception.why);
    });

    it("keeps the committed exceptions well formed, each with a one-line reason", () => {
        const committed: ExceptionList = YAML.parse(fs.readFileSync(path.join(ROOT, ".ci", "lint", "exceptions.yaml"), "utf8"));
        expect(Object.keys(committed).sort()).to.deep.equal(["checkov", "kube-score"]);
        const { problems } = triage([], committed);
        expect(problems).to.deep.equal([]);
        for (const e of Object.values(committed).flat()) {
            expect(e.why, e.check).to.not.include("\n");
        }
    });
});
