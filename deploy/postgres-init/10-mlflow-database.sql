-- Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d):
-- MLflow's tracking store gets its own database beside headspec's store (POSTGRES_DB).
CREATE DATABASE mlflow OWNER headspec;
