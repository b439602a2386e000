"""Similarity search: image embeddings of a run (``embeddings``) and the vector store behind one interface, Qdrant
Edge embedded or a Qdrant server by URL (``vectorstore``).

Layer 5 of core: imports ``core.models``, ``core.data``, ``core.store`` and the ground floor.
"""
