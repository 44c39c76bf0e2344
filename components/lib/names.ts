/**
 * Names other code checks against: plain constants with no imports, so that the policy pack and
 * the components share them without the pack depending on Pulumi's SDKs.
 */

/**
 * ServiceAccount of the schema rollout's Jobs (components/schemaRollout.ts): the only pods of the
 * stack that mount an API token, bound to a Role on exactly the objects they scale and suspend.
 */
export const ROLLOUT_SERVICE_ACCOUNT = "mlflow-schema-rollout";
