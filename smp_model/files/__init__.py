"""Files the engine writes and reads: outputs written all-or-nothing through temporary files
(`smp_model.files.outputs`), and the checks and readers of the files a user gives
(`smp_model.files.inputs`).  Every public name of both is importable from here."""
from __future__ import annotations

from .inputs import (FITS_BLOCK, TABLE_FORMATS, fits_file_problem, input_path_problem,
                     open_input_fits, path_length_problem, read_input_table,
                     require_fits_file)
from .outputs import (OutputExistsError, OutputFiles, OutputPathError, OutputWriteError,
                      atomic_output, atomic_write, atomic_write_bytes, check_writable,
                      utc_timestamp)

__all__ = ["FITS_BLOCK", "TABLE_FORMATS", "OutputExistsError", "OutputFiles", "OutputPathError",
           "OutputWriteError", "atomic_output", "atomic_write", "atomic_write_bytes",
           "check_writable", "fits_file_problem", "input_path_problem", "open_input_fits",
           "path_length_problem", "read_input_table", "require_fits_file", "utc_timestamp"]
