"""``python tests/hardening/cli_driver.py ARGS...``: ``isletbayes ARGS...`` in a process of its own, for tests
that interrupt or kill it; ``design`` draws its simulations from hand-made posterior draws (fake_posterior.py)
instead of fitting the C-peptide model. With ISLETBAYES_TEST_SECTION_PROCESSES=1, ``run`` computes every section
in worker processes (as it does the MCMC sections), so a test can interrupt worker processes without waiting
for MCMC fits."""

import sys

if __name__ == "__main__":  # worker processes import this file as __mp_main__: they must not run the command
    if sys.argv[1:2] == ["design"]:
        import fake_posterior

        fake_posterior.install()

    import os

    if os.environ.get("ISLETBAYES_TEST_SECTION_PROCESSES") == "1":
        from isletbayes.analyses import main_job

        main_job.HEAVY_SECTIONS = tuple(main_job.SECTION_TITLES)

    from isletbayes.analyses.cli import run

    run(sys.argv[1:])  # the console script's entry point
