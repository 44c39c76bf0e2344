-- MLflow's login role and its two databases (tracking metadata, basic-auth users).
-- The official postgres image runs every *.sql file in /docker-entrypoint-initdb.d once, with
-- psql as the superuser, on the first start against an empty data directory.
-- Names and the password come from the container environment through \getenv, so no secret is
-- written into this file, onto a command line or into the server log.
\set ON_ERROR_STOP on
\getenv app_user MLFLOW_DB_USER
\getenv app_password MLFLOW_DB_PASSWORD
\getenv tracking_db MLFLOW_TRACKING_DB
\getenv auth_db MLFLOW_AUTH_DB

CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password';

CREATE DATABASE :"tracking_db" OWNER :"app_user";
CREATE DATABASE :"auth_db" OWNER :"app_user";

-- Only the owner (and the superuser) may connect.
REVOKE ALL ON DATABASE :"tracking_db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"auth_db" FROM PUBLIC;
