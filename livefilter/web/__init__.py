"""`livefilter serve`: a local web page for uploads (photos, clips) and the browser's own camera.

A thin adapter: uploads go through the same engine, temporal stage and video-file conversion
as the command line (`livefilter.pipeline`, `livefilter.sinks.video_file`); this package adds
only HTTP, a job queue, a result cache and the static page files.
"""
