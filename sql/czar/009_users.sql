-- qserv_py czar metadata, version 9: users and their usage (setting auth = token), see
-- qserv_py/cluster/users.py and docs/security.md.

-- One row a user. The token is shown once, when the user is added; only its SHA-256 is
-- kept (a token is 32 random bytes: no slow hash is needed against guessing).
CREATE TABLE qserv_meta.users (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    token_hash  bytea NOT NULL UNIQUE,
    admin       boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Bytes of results a user received per UTC day (setting user_max_result_bytes_per_day).
CREATE TABLE qserv_meta.user_usage (
    name          text NOT NULL REFERENCES qserv_meta.users ON DELETE CASCADE,
    day           date NOT NULL,
    result_bytes  bigint NOT NULL DEFAULT 0,
    queries       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (name, day)
);
