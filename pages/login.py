"""Sign in: the only page a visitor sees until the plant's identity provider (OIDC, ``st.login``) knows them."""

import streamlit as st

st.title("Anomaly Workbench")
st.markdown(
    "Sign in with your plant account to see the runs. **Viewers** can look at every page; **engineers** can also "
    "launch runs, import data, give feedback and delete."
)
st.button("Sign in", type="primary", icon=":material/login:", on_click=st.login, key="login")
