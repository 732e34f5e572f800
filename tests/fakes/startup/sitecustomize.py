"""Start-up hook of test processes that must know the fake servers (see tests/fakes).

Python imports ``sitecustomize`` at start-up when one is on ``sys.path``;
this folder is on ``PYTHONPATH`` only in processes a test started with
``tests.fakes.fake_env()``.
"""

from tests.fakes import register_fakes

register_fakes()
