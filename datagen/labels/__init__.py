"""Label passes: what an item's labels are and how they are computed from the posed mesh
and the camera (visibility, exact silhouette and depth).  numpy only.
"""
