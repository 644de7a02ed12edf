"""Write-audit-publish ingest: every delivered file ends as published, quarantined, rejected or
duplicate, with a reason in audit.batches. One delivered file flows through named steps, its name
parsed once when it arrives (ewi.ingest.flow):

    read     reading.py   fingerprint the file, decide its dialect, scan it for identity numbers,
                          check its header and manifest: nothing of it reaches the warehouse yet
    write    pending.py   COPY the file into its own pending.<source>_<batch> table, in one transaction
    check    pseudonyms.py  reject the batch if its pseudonyms are unkeyed hashes of identity numbers
    audit    gate.py      run the source's GX suite against the pending batch
    decide   decide.py    record every check, then publish, quarantine or reject
    publish  publish.py   move the batch into raw.<source> in one transaction, replacing the batch
                          it corrects
    release  quarantine.py  list quarantined batches; release one through the same audit and decision

A crash anywhere leaves a 'pending' batch that the next attempt for the same file resumes, so
retries neither lose nor double rows.
"""

from ewi.ingest.decide import FINAL_STATUSES, IngestResult
from ewi.ingest.flow import ingest_file, ingest_files

__all__ = ["FINAL_STATUSES", "IngestResult", "ingest_file", "ingest_files"]
