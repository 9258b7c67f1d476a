"""`dcgan studio`: a local web app (Gradio, the `ui` extra) over one run's generator.

    actions.py   what each tab does, over the library functions the commands call (no Gradio here):
                 draw (sampling.sample), walk (sampling.interpolate), repair (repair.inpaint_arrays /
                 project_arrays), verify (identity.verification.verify), the run's curves and grids
    app.py       the Gradio Blocks: one function per tab, shown only when the run supports it; each
                 event named (api_name) so gradio_client and tests call what a click calls
    serve.py     the checks before anything loads (Gradio installed, the port free, the host), and the
                 launch: 127.0.0.1 by default, no share link, no analytics, no fonts from the internet

Nothing here writes into the run directory: images go to a temporary folder the app removes on exit.
"""
