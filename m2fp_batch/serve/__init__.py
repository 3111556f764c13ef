"""The service: ``POST /api/parse`` and a web page on Ray Serve, with the job's engine, rows and palette.

Never imports ``m2fp_batch.pipeline``: decoding (``m2fp_batch.decode``), rows (``m2fp_batch.rows``)
and rendering (``m2fp_batch.annotate.render``) are the job's own code, shared.
"""
