"""The Streamlit app (``streamlit run mlops/app/Home.py``): UI only; its data logic lives in mlops.core."""
