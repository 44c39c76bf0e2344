/** The program's AWS resources in the shape the pure checks take. */
import { parsePolicy, PolicyDocumentLike } from "../../policy/checks/aws";
import { BucketGroup, bucketGroups, ResourceLike } from "../../policy/checks/resources";
import type { ProgramRun } from "../harness";

/** Every resource of a run as the grouping sees it: outputs as props, recorded dependencies. */
export function resourceLikes(run: ProgramRun): ResourceLike[] {
    return run.resources.map((r) => ({ type: r.type, urn: r.urn, props: r.state, dependencies: r.dependencies }));
}

/** The run's one artifact bucket with its companions. */
export function artifactBucket(run: ProgramRun): BucketGroup {
    const groups = bucketGroups(resourceLikes(run));
    if (groups.length !== 1) {
        throw new Error(`expected one bucket, found ${groups.length}`);
    }
    return groups[0]!;
}

/** Logical names of the ArtifactStore's identities: the tracking server's and the backups'. */
export const IDENTITIES = Object.freeze({ server: "mlflow-artifacts", backup: "mlflow-artifacts-backup" });

/** An identity's policy and the bucket policy, as the program generates them. */
export function policyDocuments(run: ProgramRun, identity: string = IDENTITIES.server): { identity: PolicyDocumentLike; bucket: PolicyDocumentLike } {
    return {
        identity: parsePolicy(run.one("aws:iam/policy:Policy", new RegExp(`^${identity}-policy$`)).inputs.policy)!,
        bucket: parsePolicy(run.one("aws:s3/bucketPolicy:BucketPolicy").inputs.policy)!,
    };
}
