-- qserv_py czar metadata, version 5: TAP async jobs (UWS 1.1), see api/jobs.py.

-- One row a job. Its files (uploaded tables, the result) are in the service's results
-- directory, <results_dir>/<id>/; the row and the files go at the destruction time.
CREATE TABLE qserv_meta.uws_jobs (
    id                  text PRIMARY KEY,           -- random, URL-safe
    run_id              text,                       -- the client's RUNID
    owner               text,                       -- NULL: no authenticated owner
    phase               text NOT NULL DEFAULT 'PENDING' CHECK (phase IN
                            ('PENDING', 'QUEUED', 'EXECUTING', 'COMPLETED', 'ERROR',
                             'ABORTED', 'ARCHIVED')),
    -- the DALI parameters, names lower-case, each with its values in order:
    -- {"query": ["SELECT ..."], "lang": ["ADQL"], "upload": ["t,param:t1"]}
    parameters          jsonb NOT NULL DEFAULT '{}',
    -- multipart file parts sent with the job: part name -> file name in the job directory
    uploads             jsonb NOT NULL DEFAULT '{}',
    execution_duration  integer NOT NULL CHECK (execution_duration > 0),  -- seconds
    creation_time       timestamptz NOT NULL DEFAULT now(),
    start_time          timestamptz,
    end_time            timestamptz,
    destruction         timestamptz NOT NULL,
    -- the service process that queued or runs the job; it is alive while a czar session
    -- has application_name 'qserv_py:uws:<runner>' (see api/jobs.py, recovery)
    runner              text,
    query_id            bigint,                     -- the engine query of the run
    error               text,                       -- ERROR / ABORTED: why
    result_file         text,                       -- COMPLETED: file name in the job directory
    result_type         text,                       -- its media type
    result_size         bigint,
    result_rows         bigint,
    overflow            boolean                     -- the result was cut at MAXREC
);
CREATE INDEX uws_jobs_creation_idx ON qserv_meta.uws_jobs (creation_time DESC);
CREATE INDEX uws_jobs_destruction_idx ON qserv_meta.uws_jobs (destruction);
CREATE INDEX uws_jobs_active_idx ON qserv_meta.uws_jobs (phase)
    WHERE phase IN ('QUEUED', 'EXECUTING');
