import atexit
import os
import shutil
import tempfile

# Compiled feature and tree code, kept once for the whole run and shared by every process it starts (server
# workers, CLI runs, Dask workers), as the ``leadscore`` command keeps it under its home. Set here, before
# anything imports numba, which reads it then.
if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="leadscore-test-numba-")
    atexit.register(shutil.rmtree, os.environ["NUMBA_CACHE_DIR"], True)
