"""What a report reads from a run folder, checked before it is used: the record (the predictions'
checked reader is the file format's own, pyramid_lab.runs.predictions_file).

Run folders are written by runs that crashed, by older versions, by hand, or by someone hostile.
A record that cannot be used becomes one message (raised as RecordError) so that the report
names it and goes on with the rest; nothing here ever blocks on a FIFO, reads a device, or loads a
pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pyramid_lab.runs.reading import UnreadableFile, read_regular

# A metrics.json is a few kB (a 1,000-epoch history is about 250 kB); more is not a record.
RECORD_LIMIT = 16 * 2**20


class RecordError(ValueError):
    """One metrics.json that cannot be used; the message says what is wrong with it."""


def read_record_file(path: Path) -> Any:
    """The parsed JSON of a metrics.json, or RecordError saying why it cannot be read."""
    try:
        data = read_regular(path, RECORD_LIMIT)
        return json.loads(data)
    except UnreadableFile as error:
        raise RecordError(str(error)) from None
    except json.JSONDecodeError as error:
        raise RecordError(f"not valid JSON ({error})") from None
    except UnicodeDecodeError:
        raise RecordError("not UTF-8 text") from None
    except ValueError as error:
        # Python >= 3.11 refuses to parse integers of more than 4,300 digits (CVE-2020-10735).
        raise RecordError(f"holds a number that cannot be read ({error})") from None
    except RecursionError:
        raise RecordError("nested too deeply to be a record") from None
