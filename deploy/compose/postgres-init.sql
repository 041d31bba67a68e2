-- Local development only (docker-compose). Run once by the postgres image on an empty data
-- directory (/docker-entrypoint-initdb.d). Mirrors production: one database per service, each
-- owned by its own role, so a service cannot read another service's tables.
-- The passwords are development placeholders; production credentials live in Kubernetes
-- Secrets (see deploy/README.md).

CREATE ROLE gateway        LOGIN PASSWORD 'gateway';
CREATE ROLE scoring        LOGIN PASSWORD 'scoring';
CREATE ROLE evidence       LOGIN PASSWORD 'evidence';
CREATE ROLE recommendation LOGIN PASSWORD 'recommendation';

CREATE DATABASE gateway        OWNER gateway;
CREATE DATABASE scoring        OWNER scoring;
CREATE DATABASE evidence       OWNER evidence;
CREATE DATABASE recommendation OWNER recommendation;

-- No role other than the owner (and the superuser) may connect to a service's database.
REVOKE CONNECT, TEMPORARY ON DATABASE gateway        FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE scoring        FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE evidence       FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE recommendation FROM PUBLIC;
