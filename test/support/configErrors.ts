/** Assertions on config errors: a refusal names the key and says what is allowed. */
import { expect } from "chai";
import { ConfigError, PROJECT } from "../../components/config";

/**
 * Asserts that `parse` throws a {@link ConfigError} naming `mlflow-k8s:<key>` and matching
 * `allowed`; returns the message for further checks.
 */
export function expectRejected(parse: () => unknown, what: string, key: string, allowed: RegExp): string {
    let error: unknown;
    try {
        parse();
    } catch (e) {
        error = e;
    }
    expect(error, `expected ${what} to be rejected`).to.be.instanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).to.include(`${PROJECT}:${key}`);
    expect(message).to.match(allowed);
    return message;
}
