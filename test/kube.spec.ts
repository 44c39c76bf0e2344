import { expect } from "chai";
import { POD_SECURITY_LABELS, checksum, containerSecurityContext, labels, podSecurityContext, selectorLabels } from "../components/kube";

describe("kube helpers", () => {
    it("labels with the recommended app.kubernetes.io keys, the selector being a stable subset", () => {
        const l = labels("mlflow", "tracking-server", "3.0.0");
        const s = selectorLabels("mlflow", "tracking-server");
        expect(l).to.include(s);
        expect(l["app.kubernetes.io/managed-by"]).to.equal("pulumi");
        expect(s, "the version must not be in an immutable selector").to.not.have.property("app.kubernetes.io/version");
    });

    it("enforces, audits and warns on the restricted Pod Security profile", () => {
        for (const mode of ["enforce", "audit", "warn"]) {
            expect(POD_SECURITY_LABELS[`pod-security.kubernetes.io/${mode}`]).to.equal("restricted");
        }
    });

    it("builds restricted security contexts", () => {
        expect(podSecurityContext(10001)).to.deep.include({ runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001 });
        expect(containerSecurityContext()).to.deep.equal({
            allowPrivilegeEscalation: false,
            privileged: false,
            readOnlyRootFilesystem: true,
            runAsNonRoot: true,
            capabilities: { drop: ["ALL"] },
            seccompProfile: { type: "RuntimeDefault" },
        });
    });

    it("hashes content stably, whatever the key order, and changes with any value", () => {
        const a = checksum({ x: "1", y: { z: "2" } }, "args");
        expect(a).to.equal(checksum({ y: { z: "2" }, x: "1" }, "args"));
        expect(a).to.not.equal(checksum({ x: "1", y: { z: "3" } }, "args"));
        expect(a).to.not.equal(checksum({ x: "1", y: { z: "2" } }, "other"));
        expect(a).to.match(/^[0-9a-f]{64}$/);
    });
});
