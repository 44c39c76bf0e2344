import { expect } from "chai";
import { renderedRun, RUN_LABELS } from "./support/runs";
import { schemaErrors } from "./support/schema";

describe("Kubernetes schema (kubernetes-models 4.5.1, Kubernetes 1.33)", () => {
    for (const label of RUN_LABELS) {
        it(`accepts every object of the ${label} run`, async () => {
            const { objects } = await renderedRun(label);
            expect(objects.length).to.be.greaterThan(10);
            const problems = objects.flatMap((o) => schemaErrors(o).map((e) => `${o.kind} ${o.metadata.name}: ${e}`));
            expect(problems, problems.join("\n")).to.deep.equal([]);
        });
    }

    describe("rejects broken objects", () => {
        let deployment: any;
        before(async () => {
            const { objects } = await renderedRun("dev");
            deployment = objects.find((o) => o.kind === "Deployment");
        });
        const broken = (mutate: (d: any) => void): any => {
            const copy = structuredClone(deployment);
            mutate(copy);
            return copy;
        };

        it("accepts the unmodified Deployment (the control)", () => {
            expect(schemaErrors(deployment)).to.deep.equal([]);
        });
        it("a missing required field", () => {
            expect(schemaErrors(broken((d) => delete d.spec.selector)).join()).to.include("selector");
        });
        it("a string where the schema wants an integer", () => {
            expect(schemaErrors(broken((d) => { d.spec.template.spec.containers[0].ports[0].containerPort = "5000"; })).join())
                .to.include("containerPort");
        });
        it("a number where the schema wants a string, deep in a container", () => {
            expect(schemaErrors(broken((d) => { d.spec.template.spec.containers[0].env[0].name = 7; })).join()).to.include("/env/0/name");
        });
        it("a container without a name", () => {
            expect(schemaErrors(broken((d) => delete d.spec.template.spec.containers[0].name)).join()).to.include("name");
        });
        it("an API version the 1.33 API server no longer serves", () => {
            expect(schemaErrors(broken((d) => { d.apiVersion = "extensions/v1beta1"; })).join()).to.include("no longer served");
        });
        it("a kind that does not exist", () => {
            expect(schemaErrors(broken((d) => { d.kind = "Deploymnet"; })).join()).to.include("no such kind");
        });
    });
});
