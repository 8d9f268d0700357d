"""Developer tools shipped with the package, not used by the library: ``lakehouse demo``
(:mod:`.demo`) and the local Prefect stack of ``make serve`` / ``make stop`` (:mod:`.serve`)."""
