"""Tables and figures: the markdown tables of a run, a sweep, a population and a request stream, and
the figures the notebooks show. Reads result dicts only; imports nothing else of the package."""
