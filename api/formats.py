"""Result and error documents: VOTable (BINARY2, TABLEDATA), CSV, TSV, JSON, Parquet.

(Skeleton: only the DALI error document so far.)
"""

from __future__ import annotations

from xml.sax.saxutils import escape

VOTABLE_MEDIA = "application/x-votable+xml"


def error_document(message: str) -> bytes:
    """A DALI error: a VOTable whose results RESOURCE has ``QUERY_STATUS=ERROR``."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'
        '  <RESOURCE type="results">\n'
        f'    <INFO name="QUERY_STATUS" value="ERROR">{escape(message)}</INFO>\n'
        "  </RESOURCE>\n"
        "</VOTABLE>\n"
    ).encode()
