"""HTTP resources: each module is one blueprint; views only translate HTTP to calls and back."""
