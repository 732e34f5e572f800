"""Deliberately broken server variants, started through the real command line in tests.

Register one for a child process with
``CONCURRENCY_BENCH_EXTRA="fake_bad_echo=tests.fakes.bad_echo"`` (see
``servers._register_extra``); users never see them.
"""
